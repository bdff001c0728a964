"""``barbeque import``: a cookpad/barbeque database's rows as manifests for ``kubectl apply``.

Pure: it takes the rows ``adapters.mysql`` read and returns YAML, so each mapping below is
tested without a database. Every row either becomes an object or is named in a note (and
in the YAML as a comment): nothing is dropped silently.

- App → Namespace (the application); its docker_image goes on each of its definitions.
- JobDefinition → JobDefinition: barbeque's ``command`` runs after the image's entrypoint
  (``docker run image *command``), so it becomes ``args``; a case-sensitive job name
  (``NotifyAuthor``) becomes ``spec.jobName`` beside a Kubernetes name (``notify-author``).
  Without a retry_config barbeque never retried, so ``retry.limit`` is written 0.
- JobQueue → JobQueue on the same SQS queue (``spec.queueUrl``), so nothing moves.
- SNS subscription → SNSSubscription in the definition's namespace, on the same topic and
  queue, so the operator keeps the queue subscribed (SNS answers the subscription barbeque
  made) and routes the topic's messages to the same job.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml
from pydantic import ValidationError

from barbeque.api.models import (
    ANNOTATION_APPLICATION,
    API_VERSION,
    GROUP,
    JobDefinition,
    JobQueue,
)
from barbeque.api.subscriptions import SNSSubscription

ANNOTATION_DESCRIPTION = f"{GROUP}/description"
ANNOTATION_IMPORTED = f"{GROUP}/imported-from"
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def kube_name(name: str, limit: int = 63) -> str:
    """A DNS-1123 label for a barbeque name: ``NotifyAuthor`` → ``notify-author``."""
    kebab = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "-", name).lower()
    kebab = re.sub(r"[^a-z0-9]+", "-", kebab).strip("-")
    return kebab[:limit].rstrip("-") or "x"


@dataclass
class Imported:
    """The manifests, each with the comment above it, and what could not be imported."""

    documents: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def render(self) -> str:
        parts = [
            "# Imported from a cookpad/barbeque database by `barbeque import`.\n"
            "# Review, then: kubectl apply -f <this file>\n"
        ]
        for comment, body in self.documents:
            text = "".join(f"# {line}\n" for line in comment.splitlines()) if comment else ""
            parts.append(f"---\n{text}{yaml.safe_dump(body, sort_keys=False)}")
        for comment in (*self.comments, *self.problems):
            parts.append("".join(f"# {line}\n" for line in comment.splitlines()))
        return "".join(parts)


def _command(value: Any) -> list[str]:
    """barbeque serialized ``command`` as a YAML array (Rails ``serialize :command, Array``)."""
    if value is None or value == "":
        return []
    loaded = yaml.safe_load(value) if isinstance(value, str) else value
    if not isinstance(loaded, list):
        raise ValueError(f"command is not an array: {value!r}")
    return [str(part) for part in loaded]


def _unique(name: str, taken: set[str]) -> str:
    candidate, n = name, 2
    while candidate in taken:
        suffix = f"-{n}"
        candidate, n = name[: 63 - len(suffix)] + suffix, n + 1
    taken.add(candidate)
    return candidate


def _queue_of(
    definition_id: int, subscriptions: list[dict[str, Any]], queues: dict[int, str]
) -> str:
    """The JobQueue a definition is written with. barbeque's definitions named no queue
    (a message names it), and neither do ours route by it: it is the queue the definition's
    SNS subscriptions use, else ``default`` if there is one, else the first queue."""
    for subscription in subscriptions:
        if subscription["job_definition_id"] == definition_id:
            found = queues.get(subscription["job_queue_id"])
            if found:
                return found
    names = list(queues.values())
    if "default" in names or not names:
        return "default"
    return names[0]


def build(tables: dict[str, list[dict[str, Any]]]) -> Imported:
    result = Imported()
    queues = _queues(tables["job_queues"], result)
    namespaces = _applications(tables["apps"], result)
    retries = {row["job_definition_id"]: row for row in tables["retry_configs"]}
    slacks: dict[int, dict[str, Any]] = {}
    for row in tables["slack_notifications"]:
        if row["job_definition_id"] is not None:
            slacks.setdefault(row["job_definition_id"], row)
    apps = {row["id"]: row for row in tables["apps"]}
    names = _definition_names(tables["job_definitions"])
    # Definition id → (namespace, resource name, barbeque's "app/job" for comments).
    definitions: dict[int, tuple[str, str, str]] = {}
    for row in tables["job_definitions"]:
        app = apps.get(row["app_id"])
        if app is None or row["app_id"] not in namespaces:
            result.problems.append(
                f"SKIPPED job_definitions id={row['id']} ({row['job']!r}): "
                f"its app id={row['app_id']} is missing or could not be imported"
            )
            continue
        namespace = namespaces[row["app_id"]]
        name = names[row["id"]]
        spec: dict[str, Any] = {}
        if name != row["job"]:
            spec["jobName"] = row["job"]
        spec["description"] = row["description"] or ""
        spec["queue"] = _queue_of(row["id"], tables["sns_subscriptions"], queues)
        spec["image"] = app["docker_image"]
        try:
            args = _command(row["command"])
        except (ValueError, yaml.YAMLError) as exc:
            result.problems.append(f"SKIPPED job_definitions id={row['id']}: {exc}")
            continue
        if args:
            spec["args"] = args
        spec["retry"] = _retry(retries.get(row["id"]))
        slack = slacks.get(row["id"])
        if slack is not None:
            spec["slack"] = {
                "channel": slack["channel"],
                "notifySuccess": bool(slack["notify_success"]),
                "notifyFailureOnlyIfRetryLimitReached": bool(
                    slack["notify_failure_only_if_retry_limit_reached"]
                ),
                "failureText": slack["failure_notification_text"] or "",
            }
        body = {
            "apiVersion": API_VERSION,
            "kind": "JobDefinition",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "annotations": {ANNOTATION_IMPORTED: f"barbeque_job_definitions/{row['id']}"},
            },
            "spec": spec,
        }
        if _valid(JobDefinition, body, f"job_definitions id={row['id']}", result):
            label = f"{app['name']}/{row['job']}"
            definitions[row["id"]] = (namespace, name, label)
            result.documents.append((f"barbeque job {label}", body))
    _subscriptions(tables["sns_subscriptions"], queues, definitions, result)
    return result


def _definition_names(rows: list[dict[str, Any]]) -> dict[int, str]:
    """Definition id → resource name, unique per app. A job whose name already is a
    Kubernetes name keeps it (messages find a definition by resource name before
    ``spec.jobName``), so ``notify`` stays ``notify`` beside ``Notify`` → ``notify-2``."""
    taken: dict[int, set[str]] = {}
    names: dict[int, str] = {}
    exact_first = sorted(rows, key=lambda row: kube_name(row["job"]) != row["job"])
    for row in exact_first:
        names[row["id"]] = _unique(kube_name(row["job"]), taken.setdefault(row["app_id"], set()))
    return names


def _retry(row: dict[str, Any] | None) -> dict[str, Any]:
    if row is None:
        return {"limit": 0}
    retry: dict[str, Any] = {
        "limit": int(row["retry_limit"]),
        "baseDelaySeconds": float(row["base_delay"]),
        "jitter": bool(row["jitter"]),
    }
    if row["max_delay"] is not None:
        retry["maxDelaySeconds"] = float(row["max_delay"])
    return retry


def _valid(model: Any, body: dict[str, Any], what: str, result: Imported) -> bool:
    try:
        model.model_validate(body)
    except ValidationError as exc:
        reasons = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        result.problems.append(f"SKIPPED {what}: {reasons}")
        return False
    return True


def _applications(rows: list[dict[str, Any]], result: Imported) -> dict[int, str]:
    """App id → namespace. A name that is not a namespace name keeps its own in the
    application annotation, by which messages and the Web API still find it."""
    namespaces: dict[int, str] = {}
    taken: set[str] = set()
    for row in rows:
        name = row["name"]
        namespace = _unique(kube_name(name), taken)
        annotations = {ANNOTATION_IMPORTED: f"barbeque_apps/{row['id']}"}
        comment = f"barbeque app {name}"
        if namespace != name or not _LABEL.match(name):
            annotations[ANNOTATION_APPLICATION] = name
            comment += (
                f"\nNOTE: {name!r} is not a namespace name; the application is namespace "
                f"{namespace!r}"
            )
            result.comments.append(
                f"NOTE: app {name!r} became namespace {namespace!r} "
                f"(annotation {ANNOTATION_APPLICATION})"
            )
        if row["description"]:
            annotations[ANNOTATION_DESCRIPTION] = row["description"]
        namespaces[row["id"]] = namespace
        result.documents.append(
            (
                comment,
                {
                    "apiVersion": "v1",
                    "kind": "Namespace",
                    "metadata": {"name": namespace, "annotations": annotations},
                },
            )
        )
    return namespaces


def _queues(rows: list[dict[str, Any]], result: Imported) -> dict[int, str]:
    """Queue id → JobQueue name; each keeps draining barbeque's own SQS queue."""
    names: dict[int, str] = {}
    taken: set[str] = set()
    for row in rows:
        name = _unique(kube_name(row["name"]), taken)
        annotations = {ANNOTATION_IMPORTED: f"barbeque_job_queues/{row['id']}"}
        comment = f"barbeque queue {row['name']}"
        if name != row["name"]:
            comment += f"\nNOTE: enqueue with queue {name!r} (barbeque called it {row['name']!r})"
            result.comments.append(f"NOTE: queue {row['name']!r} became JobQueue {name!r}")
        if row["description"]:
            annotations[ANNOTATION_DESCRIPTION] = row["description"]
        body = {
            "apiVersion": API_VERSION,
            "kind": "JobQueue",
            "metadata": {"name": name, "annotations": annotations},
            "spec": {"queueUrl": row["queue_url"]},
        }
        if _valid(JobQueue, body, f"job_queues id={row['id']}", result):
            names[row["id"]] = name
            result.documents.append((comment, body))
    return names


def _subscriptions(
    rows: list[dict[str, Any]],
    queues: dict[int, str],
    definitions: dict[int, tuple[str, str, str]],
    result: Imported,
) -> None:
    """SNS subscriptions → SNSSubscriptions beside the definitions they feed.

    The SNS subscription and queue policy barbeque made stay in AWS; the operator finds
    the subscription SNS already has (Subscribe is idempotent) and rewrites the policy for
    the same topics, so no message of the topic is lost across the switch. A row whose
    queue or definition was not imported is skipped and named.
    """
    taken: dict[str, set[str]] = {}
    for row in rows:
        what = f"sns_subscriptions id={row['id']} ({row['topic_arn']})"
        queue = queues.get(row["job_queue_id"])
        target = definitions.get(row["job_definition_id"])
        if queue is None or target is None:
            missing = (
                f"its job queue id={row['job_queue_id']}"
                if queue is None
                else f"its job definition id={row['job_definition_id']}"
            )
            result.problems.append(f"SKIPPED {what}: {missing} is missing or was skipped")
            continue
        namespace, job, label = target
        topic = row["topic_arn"].rpartition(":")[2]
        name = _unique(kube_name(f"{topic}-{job}"), taken.setdefault(namespace, set()))
        body = {
            "apiVersion": API_VERSION,
            "kind": "SNSSubscription",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "annotations": {ANNOTATION_IMPORTED: f"barbeque_sns_subscriptions/{row['id']}"},
            },
            "spec": {"topicArn": row["topic_arn"], "queue": queue, "job": job},
        }
        if _valid(SNSSubscription, body, what, result):
            result.documents.append(
                (f"barbeque SNS subscription {row['topic_arn']} -> {label}", body)
            )
