"""Fuzzing the SQS envelope through the real pipeline.

hypothesis generates message bodies (random JSON of any shape, wrong types in every field,
huge values up to SQS's 256 KiB, deep nesting, NaN and 100-digit numbers, unknown Types,
unknown applications and jobs, a job of another application, bad NotBefore times); they
are sent to two real queues, one without and one with a dead-letter queue, drained by
the operator running as its own process. Then every message must have exactly one
outcome, chosen by what the body says (``named_application``), not by what the operator
did. Besides the generated bodies, a list of edge cases (``edge_cases``) goes on every run.

- it names an application (``Application`` a non-empty string of at most 253 characters,
  on a JobExecution envelope) → one Error JobExecution, in that namespace if it exists
  (also when the API server refused the execution there: NaN, numbers Kubernetes cannot
  hold), else in the operator's, with a reason and a message in words, and no Job;
- it names none and its queue has a dead-letter queue → no execution, and SQS moves it to
  the dead-letter queue; without one → an Error JobExecution in the operator's namespace.

And the operator process is the same one at the end (same pid), with no traceback in its
log. A few valid messages ride along and must succeed. ``BARBEQUE_FUZZ_CASES`` sets the
number of generated cases (default 300); the figures go to
``artifacts/reliability/fuzz.json``.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from barbeque.api.envelope import MAX_DEPTH
from barbeque.services.naming import execution_name
from tests.cluster.harness import Cluster
from tests.support.aws import MotoProcess
from tests.support.operator import (
    GROUP,
    OPERATOR_NAMESPACE,
    VERSION,
    App,
    OperatorProcess,
    cleanup_app,
    local_operator,
    make_app,
)
from tests.support.reliability import (
    LABEL_EXECUTION,
    executions_path,
    list_all,
    phase_of,
    record_figures,
    send_batch,
)
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e

CASES = int(os.environ.get("BARBEQUE_FUZZ_CASES") or 300)
SQS_LIMIT = 262_144  # bytes of one message body
MISSING = object()
VALID_CONTROLS = 5
KNOWN_REASONS = {"InvalidMessage", "UnknownJob"}
FINISHED = ("Succeeded", "Failed", "Error")

# -- what SQS accepts: #x9 | #xA | #xD | #x20-#xD7FF | #xE000-#xFFFD | #x10000-#x10FFFF ----
sqs_chars = st.characters(
    codec="utf-8", exclude_categories=("Cs", "Cc"), exclude_characters="\ufffe\uffff"
) | st.sampled_from("\t\n\r")
text = st.text(sqs_chars, max_size=30)
dns_label = st.from_regex(r"[a-z]([a-z0-9-]{0,30}[a-z0-9])?", fullmatch=True)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | text
)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(text, children, max_size=4),
    max_leaves=12,
)


@dataclass(frozen=True)
class Raw:
    """JSON text spliced in as is: NaN, huge numbers, deep nesting, huge strings."""

    text: str


raw_values = st.one_of(
    st.sampled_from(["NaN", "Infinity", "-Infinity", "1e400", "-0", "1" * 100, "1" * 5000]),
    st.integers(1, 3000).map(lambda depth: Raw("[" * depth + "]" * depth)),
    st.integers(1, 1500).map(lambda depth: Raw('{"a":' * depth + "1" + "}" * depth)),
    st.tuples(st.text(sqs_chars, min_size=1, max_size=8), st.integers(1_000, 200_000)).map(
        lambda t: Raw(json.dumps((t[0] * (t[1] // len(t[0].encode()) + 1))[: t[1]]))
    ),
).map(lambda value: value if isinstance(value, Raw) else Raw(value))


def field(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A field's value, or missing, or a value of the wrong type."""
    return st.one_of(strategy, st.just(MISSING), json_values)


def envelopes(app_a: str, app_b: str) -> st.SearchStrategy[str]:
    applications = field(
        st.one_of(
            st.sampled_from([app_a, app_a, app_b, OPERATOR_NAMESPACE, "", " "]),
            dns_label,
            text,
            st.integers(54, 300).map(lambda n: "a" * n),
        )
    )
    jobs = field(st.one_of(st.just("only-in-b"), dns_label, text, st.just("x" * 254)))
    types = field(st.sampled_from(["JobExecution"] * 4 + ["JobRetry", "Notification"]) | text)
    messages = st.one_of(json_values, raw_values, st.just(MISSING))
    not_befores = st.one_of(
        st.just(MISSING),
        st.just(MISSING),
        st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()),
        st.datetimes().map(lambda d: d.isoformat()),
        text,
        json_values,
    )
    retry_ids = field(text | dns_label)

    @st.composite
    def build(draw: st.DrawFn) -> str:
        fields = {
            "Type": draw(types),
            "Application": draw(applications),
            "Job": draw(jobs),
            "NotBefore": draw(not_befores),
        }
        if fields["Application"] == app_b and fields["Job"] == "only-in-b":
            fields["Job"] = "not-in-b"  # B's own job, named by B: a valid message
        if fields["Type"] == "JobRetry":
            fields["RetryMessageId"] = draw(retry_ids)
        body = {k: v for k, v in fields.items() if v is not MISSING}
        message = draw(messages)
        text = json.dumps(body, ensure_ascii=draw(st.booleans()))
        if message is MISSING:
            return text
        encoded = message.text if isinstance(message, Raw) else json.dumps(message)
        return text[:-1] + (", " if body else "") + '"Message": ' + encoded + "}"

    return build()


def bodies(app_a: str, app_b: str) -> st.SearchStrategy[str]:
    return st.one_of(
        envelopes(app_a, app_b),
        envelopes(app_a, app_b),
        envelopes(app_a, app_b),
        json_values.map(json.dumps),
        raw_values.map(lambda raw: raw.text),
        st.text(sqs_chars, min_size=1, max_size=200),
    ).filter(lambda body: 0 < len(body.encode()) <= SQS_LIMIT and body.strip() != "")


def edge_cases(app_a: str) -> list[str]:
    """Bodies tried on every run, on both queues, besides the generated ones."""

    def envelope(message: str, **fields: Any) -> str:
        head = {"Type": "JobExecution", "Application": app_a, "Job": "nope", **fields}
        return json.dumps(head)[:-1] + ', "Message": ' + message + "}"

    filler = SQS_LIMIT - len(envelope('""').encode())
    return [
        # Nesting that Python's json module still parses (its limit is about 1000 levels).
        *(envelope("[" * depth + "]" * depth) for depth in (100, 400, 700, 990)),
        *(envelope('{"a":' * depth + "1" + "}" * depth) for depth in (400, 900)),
        "[" * 5000 + "]" * 5000,
        # Numbers JSON allows and Kubernetes does not, or not exactly.
        *(envelope(number) for number in ("NaN", "Infinity", "1e400", str(2**64), "1" * 4000)),
        # The largest body SQS takes, in 1-byte and in 4-byte characters.
        envelope(json.dumps("x" * filler)),
        envelope(json.dumps("\U0001f525" * (filler // 4), ensure_ascii=False)),
        # Another application's job; the operator's own namespace; far times.
        envelope("1", Job="only-in-b"),
        envelope("1", Application=OPERATOR_NAMESPACE),
        envelope("1", NotBefore="9999-12-31T23:59:59-12:00"),
        envelope("1", NotBefore="0001-01-01T00:00:00+14:00"),
        json.dumps({"Type": "JobRetry", "RetryMessageId": "no-such-message"}),
    ]


def generate(app_a: str, app_b: str, cases: int) -> list[tuple[str, bool]]:
    """The edge cases and ``cases`` bodies from hypothesis, each with the queue it goes to
    (True: the one with a dead-letter queue)."""
    out = [(body, dead) for body in edge_cases(app_a) for dead in (False, True)]

    @settings(
        max_examples=cases,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(bodies(app_a, app_b), st.booleans())
    def collect(body: str, dead_letter: bool) -> None:
        out.append((body, dead_letter))

    collect()
    return out


# Python's json module gives up below 1,000 levels of nesting, how far below depends on how
# deep the caller's own stack is: from here on, the operator may read a body or call it
# not JSON, and either outcome is accepted for it.
AMBIGUOUS_NESTING = 800


def nesting(body: str) -> int:
    """How deep a JSON text nests, counted on the text (no parsing, no recursion)."""
    depth = deepest = 0
    in_string = escaped = False
    for char in body:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def readings(body: str) -> set[str | None]:
    """The applications the operator may take ``body`` to name (two when ambiguous)."""
    named = named_application(body)
    return {named, None} if nesting(body) >= AMBIGUOUS_NESTING else {named}


def named_application(body: str) -> str | None:
    """The application a body names: the envelope's rule, read off the JSON.

    A JobRetry names none (``{"Type": "JobRetry", "RetryMessageId": ...}``): it retries an
    execution wherever that one lives, so an ``Application`` field on it means nothing.
    """
    result: list[Any] = []

    def parse() -> None:  # in a thread of its own: a shallow stack, as deep as json goes
        with contextlib.suppress(ValueError, RecursionError):
            result.append(json.loads(body))

    thread = threading.Thread(target=parse)
    thread.start()
    thread.join()
    parsed = result[0] if result else None
    if not isinstance(parsed, dict) or parsed.get("Type") == "JobRetry":
        return None
    application = parsed.get("Application")
    if isinstance(application, str) and 0 < len(application) <= 253:
        return application
    return None


@dataclass
class Pipeline:
    cluster: Cluster
    moto: MotoProcess
    app_a: App
    app_b: App
    dlq_name: str
    dlq_url: str
    dead_url: str
    operator: OperatorProcess


@pytest.fixture(scope="module")
def pipeline(cluster: Cluster, crds: None, workdir: Path) -> Iterator[Pipeline]:
    """One operator process, application A (job "hello") with a queue without and one with
    a dead-letter queue, and application B (job "only-in-b")."""
    with MotoProcess(workdir / "moto.log") as moto:
        app_a = make_app(cluster, moto.aws)
        app_b = make_app(cluster, moto.aws)
        operator = local_operator(cluster, moto.url, workdir / "operator.log")
        dlq_name = ""
        try:
            app_a.define("hello")
            app_b.define("only-in-b")
            operator.start()
            dlq_name, dlq_url, dead_url = dead_letter_queue(cluster, app_a, moto)
            yield Pipeline(cluster, moto, app_a, app_b, dlq_name, dlq_url, dead_url, operator)
        finally:
            operator.stop()
            if dlq_name:
                app_a.custom.delete_cluster_custom_object(GROUP, VERSION, "jobqueues", dlq_name)
            # Error records the module left in the operator's namespace (it outlives us).
            for queue in (app_a.queue, dlq_name):
                if queue:
                    app_a.custom.delete_collection_namespaced_custom_object(
                        GROUP,
                        VERSION,
                        OPERATOR_NAMESPACE,
                        "jobexecutions",
                        label_selector=f"barbeque.dev/queue={queue}",
                    )
            cleanup_app(app_a)
            cleanup_app(app_b)


def dead_letter_queue(cluster: Cluster, app: App, moto: MotoProcess) -> tuple[str, str, str]:
    """A JobQueue the operator creates in SQS with a redrive policy: (name, url, DLQ url)."""
    name = app.queue + "-dlq"
    app.custom.create_cluster_custom_object(
        GROUP,
        VERSION,
        "jobqueues",
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "JobQueue",
            "metadata": {"name": name},
            "spec": {
                "create": True,
                "receiveWaitSeconds": 1,
                "visibilityTimeoutSeconds": 2,
                "deadLetterQueue": {"queueName": f"{name}-dead", "maxReceiveCount": 2},
            },
        },
    )

    def resolved() -> str | None:
        queue = app.custom.get_cluster_custom_object(GROUP, VERSION, "jobqueues", name)
        url: str | None = (queue.get("status") or {}).get("queueUrl")
        return url

    wait_until(f"the operator to create SQS queue of {name}", resolved, 60)
    sqs = moto.aws.sqs()
    url = sqs.get_queue_url(QueueName=f"Barbeque-{name}")["QueueUrl"]
    dead = sqs.get_queue_url(QueueName=f"{name}-dead")["QueueUrl"]
    return name, url, dead


def records_of(pipeline: Pipeline) -> dict[str, list[dict[str, Any]]]:
    """The executions of the module's queues, by message id."""
    queues = {pipeline.app_a.queue, pipeline.dlq_name}
    records: dict[str, list[dict[str, Any]]] = {}
    for execution in list_all(pipeline.cluster, executions_path()):
        if execution["spec"].get("queue") in queues:
            records.setdefault(execution["spec"]["messageId"], []).append(execution)
    return records


@pytest.mark.timeout(600)
def test_fuzzed_messages_each_end_as_one_visible_error_and_the_operator_stays_up(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    cluster, moto, operator = pipeline.cluster, pipeline.moto, pipeline.operator
    app_a, app_b = pipeline.app_a, pipeline.app_b
    pid = operator.pid
    started = time.monotonic()
    cases = generate(app_a.namespace, app_b.namespace, CASES)
    generated = time.monotonic() - started

    sqs = moto.aws.sqs()
    sent: dict[str, tuple[str, bool]] = {}
    for dead_letter in (False, True):
        url = pipeline.dlq_url if dead_letter else app_a.queue_url
        chosen = [body for body, d in cases if d == dead_letter]
        small = [body for body in chosen if len(body.encode()) < 20_000]
        for body, message_id in zip(small, send_batch(sqs, url, small), strict=True):
            sent[message_id] = (body, dead_letter)
        for body in (body for body in chosen if len(body.encode()) >= 20_000):
            message_id = sqs.send_message(QueueUrl=url, MessageBody=body)["MessageId"]
            sent[message_id] = (body, dead_letter)
    controls = [app_a.enqueue("hello", {"control": i}) for i in range(VALID_CONTROLS)]
    namespaces = {n["metadata"]["name"] for n in list_all(cluster, "/api/v1/namespaces")}
    maybe_dead = {i for i, (body, dead) in sent.items() if dead and None in readings(body)}
    surely_dead = {i for i in maybe_dead if readings(sent[i][0]) == {None}}
    expected_records = set(sent) - maybe_dead

    def settled() -> dict[str, list[dict[str, Any]]] | None:
        records = records_of(pipeline)
        finished = {
            i for i, found in records.items() if all(phase_of(e) in FINISHED for e in found)
        }
        return records if expected_records | set(controls) <= finished else None

    try:
        records = wait_until("every message to be recorded", settled, 180)
    except AssertionError:
        records = records_of(pipeline)
    dead_ids = drain(sqs, pipeline.dead_url, surely_dead)
    elapsed = time.monotonic() - started

    problems: list[str] = []
    for message_id, (body, dead) in sent.items():
        found = records.get(message_id, [])
        # Right for one reading of the body is right.
        verdicts = [
            judge(application, message_id, body, dead, found, dead_ids, namespaces)
            for application in readings(body)
        ]
        problems += min(verdicts, key=len)
    for message_id in controls:
        found = records.get(message_id, [])
        if [phase_of(e) for e in found] != ["Succeeded"]:
            problems.append(f"control {message_id}: {[e.get('status') for e in found]}")
    b_jobs = list_all(cluster, f"/apis/batch/v1/namespaces/{app_b.namespace}/jobs")
    if b_jobs:
        problems.append(f"Jobs in application B: {[j['metadata']['name'] for j in b_jobs]}")
    a_jobs = {
        j["metadata"]["labels"].get(LABEL_EXECUTION)
        for j in list_all(cluster, f"/apis/batch/v1/namespaces/{app_a.namespace}/jobs")
    }
    if a_jobs != {execution_name(i) for i in controls}:
        problems.append(f"Jobs in A other than the controls: {sorted(a_jobs)[:10]}")
    log = operator.log_text()
    reasons = Counter(detail(found[0]) for i, found in records.items() if i in sent)
    figures = {
        "cases_tried": len(sent),
        "edge_cases": 2 * len(edge_cases(app_a.namespace)),
        "generated_in_seconds": round(generated, 1),
        "sent_to_the_queue_with_a_dead_letter_queue": sum(1 for _, d in sent.values() if d),
        "error_records": sum(1 for i in records if i in sent),
        "moved_to_dead_letter_queue": len(dead_ids & maybe_dead),
        "largest_body_bytes": max(len(b.encode()) for b, _ in sent.values()),
        "reasons": dict(reasons.most_common()),
        "rejected_by_namespace": dict(
            Counter(
                found[0]["metadata"]["namespace"]
                for i, found in records.items()
                if i in sent and detail(found[0]) == "RejectedMessage"
            )
        ),
        "could_not_record_log_lines": log.count("Could not record message"),
        "problems": len(problems),
        "wall_seconds": round(elapsed, 1),
        "operator_pid_unchanged": operator.alive() and operator.pid == pid,
    }
    record_figures("fuzz", figures)
    (tmp_path / "problems.txt").write_text("\n".join(problems))
    assert not problems, "\n".join(problems[:40])
    assert operator.alive(), operator.tail()
    assert operator.pids == [pid]
    assert "Traceback" not in log, log[log.index("Traceback") - 500 :][:4000]


def detail(execution: dict[str, Any]) -> str:
    """The reason of an Error record; for invalid messages, the envelope's own reason."""
    status = execution.get("status") or {}
    if status.get("reason") == "InvalidMessage":
        return str(status.get("message", "")).split(":")[0]
    return str(status.get("reason"))


def drain(sqs: Any, url: str, expected: set[str]) -> set[str]:
    """The ids that reached the dead-letter queue (waiting for the expected ones)."""
    seen: set[str] = set()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not expected <= seen:
        result = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1, VisibilityTimeout=600
        )
        seen |= {m["MessageId"] for m in result.get("Messages", [])}
    return seen


def short(body: str) -> str:
    return repr(body[:160]) + (f"... ({len(body)} chars)" if len(body) > 160 else "")


def judge(
    application: str | None,
    message_id: str,
    body: str,
    dead_letter: bool,
    found: list[dict[str, Any]],
    dead_ids: set[str],
    namespaces: set[str],
) -> list[str]:
    """What is wrong with the outcome of one message, read as one for ``application``."""
    where = f"message {message_id} (queue {'with' if dead_letter else 'without'} DLQ) {short(body)}"
    if dead_letter and application is None:
        problems = []
        if found:
            problems.append(f"{where}: recorded, expected left for the DLQ: {found[0]['status']}")
        if message_id not in dead_ids:
            problems.append(f"{where}: not in the dead-letter queue")
        return problems
    if len(found) != 1:
        return [f"{where}: {len(found)} executions, expected one Error record"]
    execution = found[0]
    status = execution.get("status") or {}
    namespace = execution["metadata"]["namespace"]
    problems = []
    if status.get("phase") != "Error":
        problems.append(f"{where}: phase {status.get('phase')}, expected Error: {status}")
    if status.get("reason") not in KNOWN_REASONS:
        problems.append(f"{where}: reason {status.get('reason')!r}")
    words = str(status.get("message") or "")
    if len(words) < 15 or " " not in words:
        problems.append(f"{where}: no reason in words: {words!r}")
    if status.get("jobName"):
        problems.append(f"{where}: a Job was made: {status['jobName']}")
    # Also when the API server refused the execution (NaN, a number it cannot hold): the
    # Error record, without the message, goes where the application's owners look.
    wanted = application if application in namespaces else OPERATOR_NAMESPACE
    if namespace != wanted:
        problems.append(f"{where}: recorded in {namespace}, expected {wanted}")
    return problems


def test_a_payload_nested_past_the_limit_is_an_error_record_even_for_a_real_job(
    pipeline: Pipeline,
) -> None:
    """Found by the fuzz test: Messages nested 256+ levels were never finished (pydantic
    serializes 255) and 496+ never recorded (the Kubernetes client recursed), coming back
    from SQS forever. Now the envelope refuses more than ``MAX_DEPTH`` levels up front."""
    app = pipeline.app_a
    depths = [MAX_DEPTH, MAX_DEPTH + 1, 300, 700, 990]
    ids = {}
    for depth in depths:
        head = {"Type": "JobExecution", "Application": app.namespace, "Job": "hello"}
        body = json.dumps(head)[:-1] + ', "Message": ' + "[" * depth + "]" * depth + "}"
        ids[depth] = app.send(body)

    def outcomes() -> dict[int, list[dict[str, Any]]] | None:
        records = records_of(pipeline)
        found = {depth: records.get(i, []) for depth, i in ids.items()}
        if all(len(f) == 1 and phase_of(f[0]) in FINISHED for f in found.values()):
            return found
        return None

    found = wait_until("every nested message to be recorded", outcomes, 60)
    assert phase_of(found[MAX_DEPTH][0]) == "Succeeded"
    for depth in depths[1:]:
        status = found[depth][0]["status"]
        assert status["phase"] == "Error", (depth, status)
        assert not status.get("jobName")
        if depth < 900:  # deeper still, Python's json parser itself gives up: InvalidJSON
            assert f"at most {MAX_DEPTH} are accepted" in status["message"], status
    wait_until("every message to be deleted", lambda: app.queue_depth() == 0 or None, 30)
