"""The custom resources of Barbeque on Kubernetes, as pydantic models.

These models are the single source of truth for the CRD schemas (``crdgen`` turns them
into ``crds/*.yaml``) and for parsing what the API server hands the operator and the
dashboard. The package imports nothing else of ours, so every layer can depend on it.
"""

from __future__ import annotations

import enum
import re
from datetime import datetime
from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

GROUP = "barbeque.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

# Labels and annotations the operator puts on the objects it creates.
LABEL_APPLICATION = f"{GROUP}/application"
LABEL_JOB = f"{GROUP}/job"
LABEL_QUEUE = f"{GROUP}/queue"
LABEL_EXECUTION = f"{GROUP}/execution"
LABEL_MESSAGE_ID = f"{GROUP}/message-id"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
# On a namespace: the cookpad/barbeque application name it holds, for names that cannot be
# namespace names (my_app, MyApp). Messages and the Web API use that name.
ANNOTATION_APPLICATION = f"{GROUP}/application"
MANAGED_BY = "barbeque"


def cel(*rules: tuple[str, str], pass_through: bool = False) -> ConfigDict:
    """CEL rules (``x-kubernetes-validations``) the API server checks on an object: what the
    schema alone cannot say. Each is a (rule, message) pair; the message is what a refused
    ``kubectl apply`` prints. ``pass_through``: fields not modelled are kept as written
    (Kubernetes' own types the operator hands on, validated when the Job is created)."""
    extra: dict[str, Any] = {}
    if rules:
        extra["x-kubernetes-validations"] = [{"rule": r, "message": m} for r, m in rules]
    if pass_through:
        extra["x-kubernetes-preserve-unknown-fields"] = True
        return ConfigDict(extra="allow", json_schema_extra=extra)
    return ConfigDict(json_schema_extra=extra)


class Model(BaseModel):
    """Base of every CRD part: camelCase on the wire, snake_case in Python."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_enum_values=True,
    )


class Resource(Model):
    """Fields every custom resource object carries; only what the code reads is modelled.

    A subclass names its ``kind``; ``singular`` and ``plural`` follow from it as Kubernetes
    spells them (lower case; the plural with an s), so the three cannot disagree.
    """

    model_config = ConfigDict(extra="ignore")

    kind: ClassVar[str]
    singular: ClassVar[str]
    plural: ClassVar[str]

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        cls.singular = cls.kind.lower()
        cls.plural = f"{cls.singular}s"


class ObjectMeta(Model):
    """The subset of Kubernetes object metadata the operator reads."""

    model_config = ConfigDict(extra="ignore")

    name: str = ""
    namespace: str | None = None
    uid: str | None = None
    generation: int | None = None
    resource_version: str | None = None
    creation_timestamp: datetime | None = None
    deletion_timestamp: datetime | None = None
    finalizers: list[str] = Field(default_factory=list)
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class Condition(Model):
    """A Kubernetes-style condition: one observed aspect of an object's state."""

    type: str = Field(description="Condition type, for example Ready, JobCreated, LogsUploaded.")
    status: str = Field(description="True, False or Unknown.", pattern="^(True|False|Unknown)$")
    reason: str = Field(default="", description="One CamelCase word saying why.")
    message: str = Field(default="", description="The reason in words, for people.")
    last_transition_time: datetime | None = Field(
        default=None, description="When status last changed."
    )
    observed_generation: int | None = Field(
        default=None, description="The metadata.generation this condition was computed from."
    )


# Conditions as Kubernetes keeps them: a list keyed by type, so server-side apply and
# strategic tools merge by type and the server refuses two conditions of one type.
Conditions = Annotated[
    list[Condition],
    Field(
        description="The latest observations of the object's state, one per type.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    ),
]


def column(
    name: str, json_path: str, type_: str = "string", *, wide: bool = False
) -> dict[str, Any]:
    """A ``kubectl get`` column of a kind; a ``wide`` one shows with ``-o wide`` only."""
    found: dict[str, Any] = {"name": name, "type": type_, "jsonPath": json_path}
    if wide:
        found["priority"] = 1
    return found


READY_COLUMN = column("Ready", '.status.conditions[?(@.type=="Ready")].status')
STATUS_COLUMN = column("Status", ".status.phase")
AGE_COLUMN = column("Age", ".metadata.creationTimestamp", "date")

IntOrString = Annotated[int | str, Field(json_schema_extra={"x-kubernetes-int-or-string": True})]

# ---------------------------------------------------------------------------------------------
# JobQueue


class DeadLetterQueue(Model):
    """A dead-letter queue that SQS moves a message to after too many receives."""

    queue_name: str = Field(
        description="Name of the dead-letter SQS queue (created with the main queue if create).",
        min_length=1,
        max_length=80,
        pattern="^[A-Za-z0-9_-]+$",
    )
    max_receive_count: int = Field(
        default=5, ge=1, le=1000, description="Receives before SQS moves a message to the DLQ."
    )


class JobQueueSpec(Model):
    """Which SQS queue to drain and how."""

    model_config = cel(
        (
            "!(has(self.queueUrl) && has(self.queueName))",
            "set spec.queueUrl or spec.queueName, not both: a JobQueue names one SQS queue",
        ),
        (
            "!(has(self.queueUrl) && self.create)",
            "spec.create needs spec.queueName (or the default name): the operator cannot "
            "create a queue given by URL",
        ),
    )

    queue_name: str | None = Field(
        default=None,
        description="SQS queue name; defaults to Barbeque-<metadata.name> like cookpad/barbeque.",
        min_length=1,
        max_length=80,
        pattern="^[A-Za-z0-9_-]+$",
    )
    queue_url: str | None = Field(
        default=None,
        description="Full SQS queue URL, instead of queueName (for a queue of another account).",
    )
    create: bool = Field(
        default=False, description="Create the SQS queue (and its dead-letter queue) if missing."
    )
    receive_wait_seconds: int = Field(
        default=20, ge=0, le=20, description="SQS long-poll wait per receive call (0-20 s)."
    )
    visibility_timeout_seconds: int = Field(
        default=60,
        ge=0,
        le=43200,
        description="How long a received message stays hidden while its execution is recorded.",
    )
    max_concurrent_executions: int | None = Field(
        default=None,
        ge=1,
        description=(
            "Cap on unfinished executions started from this queue. At the cap the poller stops "
            "receiving, so the backlog stays in SQS. Unset means unlimited."
        ),
    )
    dead_letter_queue: DeadLetterQueue | None = Field(
        default=None, description="Redrive policy for messages the operator cannot read."
    )
    suspend: bool = Field(default=False, description="Stop receiving from this queue.")

    def sqs_queue_name(self, resource_name: str) -> str:
        return self.queue_name or f"Barbeque-{resource_name}"


class JobQueueStatus(Model):
    """What the operator observed about the queue."""

    queue_url: str | None = Field(default=None, description="The resolved SQS queue URL.")
    phase: str | None = Field(default=None, description="Ready or Error.")
    message: str | None = Field(default=None, description="Why the queue is not ready.")
    running_executions: int | None = Field(
        default=None, description="Unfinished executions started from this queue."
    )
    observed_generation: int | None = Field(
        default=None,
        description="The metadata.generation the operator's poller runs with: once equal, "
        "a spec change (cap, suspend, waits) is in effect.",
    )
    conditions: Conditions = Field(default_factory=list)


class JobQueue(Resource):
    """An Amazon SQS queue drained by the operator (cluster-scoped: shared by applications)."""

    kind: ClassVar[str] = "JobQueue"
    # Not queue/queues: Kueue's LocalQueue has them (tests/unit/test_crds.py keeps a list of
    # well-known projects' short names these must stay clear of).
    short_names: ClassVar[list[str]] = ["jobq", "jq"]
    namespaced: ClassVar[bool] = False
    printer_columns: ClassVar[list[dict[str, Any]]] = [
        column("SQS Queue", ".status.queueUrl"),
        STATUS_COLUMN,
        READY_COLUMN,
        column("Max", ".spec.maxConcurrentExecutions", "integer"),
        column("Running", ".status.runningExecutions", "integer"),
        AGE_COLUMN,
    ]

    api_version: str = Field(default=API_VERSION, alias="apiVersion")
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: JobQueueSpec = Field(default_factory=JobQueueSpec)
    status: JobQueueStatus = Field(default_factory=JobQueueStatus)


# ---------------------------------------------------------------------------------------------
# JobDefinition


class KeySelector(Model):
    """A key of a Secret or ConfigMap."""

    name: str = Field(min_length=1, description="Name of the Secret or ConfigMap.")
    key: str = Field(min_length=1, description="The key whose value is taken.")
    optional: bool | None = Field(
        default=None, description="Start the container even if the object or key is missing."
    )


class FieldSelector(Model):
    """A field of the pod, for the downward API."""

    field_path: str = Field(
        min_length=1, description="Path of the pod field, e.g. metadata.name or spec.nodeName."
    )


class EnvVarSource(Model):
    """Where an environment variable's value comes from."""

    secret_key_ref: KeySelector | None = Field(default=None, description="A key of a Secret.")
    config_map_key_ref: KeySelector | None = Field(
        default=None, description="A key of a ConfigMap."
    )
    field_ref: FieldSelector | None = Field(
        default=None, description="A field of the pod (downward API)."
    )


class EnvVar(Model):
    """An environment variable of the job's container."""

    name: str = Field(
        min_length=1,
        pattern="^[-._a-zA-Z][-._a-zA-Z0-9]*$",
        description="Variable name; BARBEQUE_* names are the operator's.",
    )
    value: str | None = Field(default=None, description="The value, as written.")
    value_from: EnvVarSource | None = Field(
        default=None, description="Take the value from a Secret, ConfigMap or pod field."
    )


class NameRef(Model):
    """A reference to a Secret or ConfigMap by name."""

    name: str = Field(min_length=1, description="Name of the Secret or ConfigMap.")
    optional: bool | None = Field(
        default=None, description="Start the container even if the object is missing."
    )


class EnvFromSource(Model):
    """A Secret or ConfigMap whose keys become environment variables."""

    prefix: str | None = Field(default=None, description="Prepended to every key's name.")
    secret_ref: NameRef | None = Field(default=None, description="Every key of a Secret.")
    config_map_ref: NameRef | None = Field(default=None, description="Every key of a ConfigMap.")


class ResourceRequirements(Model):
    """CPU and memory for the job's container."""

    requests: dict[str, IntOrString] = Field(
        default_factory=dict,
        description="What the scheduler reserves, e.g. {cpu: 500m, memory: 256Mi}.",
    )
    limits: dict[str, IntOrString] = Field(
        default_factory=dict, description="The most the container may use, e.g. {memory: 1Gi}."
    )


class Toleration(Model):
    """A Kubernetes toleration for the job's pod."""

    key: str | None = Field(default=None, description="The taint key; empty matches every key.")
    operator: str | None = Field(
        default=None, pattern="^(Exists|Equal)$", description="Exists or Equal (the default)."
    )
    value: str | None = Field(default=None, description="The taint value, with Equal.")
    effect: str | None = Field(
        default=None,
        pattern="^(NoSchedule|PreferNoSchedule|NoExecute)$",
        description="The taint effect tolerated; empty means all.",
    )
    toleration_seconds: int | None = Field(
        default=None, description="With NoExecute: how long the pod stays once tainted."
    )


class ContainerSecurity(Model):
    """Overrides of the restricted securityContext every job container gets by default."""

    run_as_user: int | None = Field(default=None, ge=0, description="The uid to run as.")
    run_as_group: int | None = Field(default=None, ge=0, description="The gid to run as.")
    run_as_non_root: bool | None = Field(
        default=None, description="Refuse to start as root (default true)."
    )
    allow_privilege_escalation: bool | None = Field(
        default=None, description="Allow setuid and the like (default false)."
    )
    read_only_root_filesystem: bool | None = Field(
        default=None, description="Mount the image's filesystem read-only."
    )


class RetryPolicy(Model):
    """Automatic retries after a failure, as cookpad/barbeque's RetryConfig.

    Only a definition that has one is retried automatically (``retry: {}`` takes
    barbeque's defaults: 3 retries from 15 s). delay(n) = min(2^n * baseDelaySeconds,
    maxDelaySeconds); with jitter a uniform random value in [0, delay]. There is no 900 s
    ceiling: long delays become Scheduled executions.
    """

    model_config = cel(
        (
            "!has(self.maxDelaySeconds) || self.maxDelaySeconds >= self.baseDelaySeconds",
            "retry.maxDelaySeconds must be at least retry.baseDelaySeconds",
        ),
    )

    limit: int = Field(default=3, ge=0, le=100, description="Retries after the first attempt.")
    base_delay_seconds: float = Field(default=15.0, ge=0, description="Delay of the first retry.")
    max_delay_seconds: float | None = Field(
        default=None, ge=0, description="Upper bound of any retry delay; unset means none."
    )
    jitter: bool = Field(default=True, description="Full jitter: uniform in [0, delay].")


class SlackNotification(Model):
    """Where and when to tell Slack, as cookpad/barbeque's SlackNotification."""

    channel: str = Field(min_length=1, description="Channel name or id, e.g. #batch.")
    notify_success: bool = Field(default=False, description="Also post on success.")
    notify_failure_only_if_retry_limit_reached: bool = Field(
        default=False, description="Stay silent on failures that will be retried."
    )
    failure_text: str = Field(
        default="", description="Appended to failure and error texts, e.g. an @mention."
    )


class HistoryPolicy(Model):
    """How long finished executions of this definition stay in the cluster.

    Deleted executions stay readable in S3 (execution.json beside the logs). Unset fields
    fall back to the operator's BARBEQUE_HISTORY_TTL_SECONDS and BARBEQUE_HISTORY_KEEP.
    """

    ttl_seconds: int | None = Field(
        default=None, ge=60, description="Delete finished executions older than this."
    )
    keep: int | None = Field(
        default=None, ge=0, description="Keep at most this many finished executions."
    )


# ---------------------------------------------------------------------------------------------
# The full Job template of a JobDefinition (spec.jobTemplate), as CronJob's jobTemplate.
#
# Only what the operator owns or checks is modelled; the rest of a pod spec and its
# containers passes through as written (x-kubernetes-preserve-unknown-fields on those
# objects only) and the API server validates it when the Job is created.

OPERATOR_LABELS = f"{GROUP}/"
# The job container's fields that come from the short form (spec.image, spec.command, ...).
SHORT_FORM_CONTAINER_FIELDS = (
    "image",
    "command",
    "args",
    "env",
    "envFrom",
    "resources",
    "imagePullPolicy",
    "securityContext",
)
NO_BARBEQUE_ENV = (
    "!has(self.env) || self.env.all(e, !e.name.startsWith('BARBEQUE_'))",
    "BARBEQUE_* variables are the operator's: it sets them on the job's container",
)


class TemplateMetadata(Model):
    """Labels and annotations of the Job or its pod; the operator adds its own."""

    model_config = cel(
        (
            f"!has(self.labels) || self.labels.all(k, !k.startsWith('{OPERATOR_LABELS}'))",
            f"labels under {OPERATOR_LABELS} are the operator's",
        )
    )

    labels: dict[str, str] = Field(
        default_factory=dict, description="Labels, e.g. kueue.x-k8s.io/queue-name."
    )
    annotations: dict[str, str] = Field(default_factory=dict, description="Annotations.")


class TemplateEnvVar(Model):
    """An environment variable of a template's container (any EnvVar of Kubernetes)."""

    model_config = cel(pass_through=True)

    name: str = Field(
        min_length=1, max_length=256, description="Variable name; BARBEQUE_* are the operator's."
    )


class TemplateContainer(Model):
    """A container of the template, passed through as Kubernetes takes it (volumeMounts,
    ports, probes, ...). The one named ``job`` is the operator's job container: its image,
    command, args, env, envFrom, resources, imagePullPolicy and securityContext come from
    the definition's spec, so the template may not set them there."""

    model_config = cel(
        (
            "self.name != 'job' || ("
            + " && ".join(f"!has(self.{f})" for f in SHORT_FORM_CONTAINER_FIELDS)
            + ")",
            "the container named job takes image, command, args, env, envFrom, resources, "
            "imagePullPolicy and securityContext from the definition's spec, not the template",
        ),
        NO_BARBEQUE_ENV,
        pass_through=True,
    )

    name: str = Field(min_length=1, description="Container name; `job` is the job's container.")
    image: str | None = Field(default=None, description="Container image (not on `job`).")
    command: list[str] | None = Field(default=None, description="Entrypoint (not on `job`).")
    args: list[str] | None = Field(default=None, description="Arguments (not on `job`).")
    env: list[TemplateEnvVar] | None = Field(
        default=None, max_length=128, description="Environment (not on `job`); no BARBEQUE_*."
    )
    env_from: list[dict[str, Any]] | None = Field(
        default=None,
        description="Secrets and ConfigMaps as variables (not on `job`).",
        json_schema_extra={
            "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
        },
    )
    resources: dict[str, Any] | None = Field(
        default=None,
        description="Requests and limits (not on `job`).",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )
    image_pull_policy: str | None = Field(default=None, description="Pull policy (not on `job`).")
    security_context: dict[str, Any] | None = Field(
        default=None,
        description="Container security context (not on `job`).",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )


class TemplatePodSpec(Model):
    """A Kubernetes PodSpec, passed through (volumes, initContainers, affinity,
    priorityClassName, runtimeClassName, ...). The operator sets restartPolicy Never:
    a failed run is retried by the operator, as a new execution."""

    model_config = cel(
        (
            "!has(self.restartPolicy) || self.restartPolicy == 'Never'",
            "restartPolicy is the operator's (Never): retries are new executions",
        ),
        pass_through=True,
    )

    containers: list[TemplateContainer] = Field(
        default_factory=list,
        max_length=20,
        description="Containers; `job` (added if missing) is the job's, others are sidecars.",
    )
    init_containers: list[TemplateContainer] = Field(
        default_factory=list, max_length=20, description="Init containers (and native sidecars)."
    )
    restart_policy: str | None = Field(default=None, description="Only Never (the operator's).")
    service_account_name: str | None = Field(
        default=None, description="The pod's ServiceAccount (or spec.serviceAccountName, not both)."
    )


class TemplatePod(Model):
    """The pod template of the Job."""

    metadata: TemplateMetadata | None = Field(
        default=None, description="Pod labels and annotations (spec.podLabels/podAnnotations win)."
    )
    spec: TemplatePodSpec | None = Field(default=None, description="The pod spec.")


class TemplateJobSpec(Model):
    """The Job's spec: its pod template. backoffLimit is the operator's (0)."""

    model_config = cel(
        (
            "!has(self.backoffLimit) || self.backoffLimit == 0",
            "backoffLimit is the operator's (0): retries are new executions, per spec.retry",
        )
    )

    backoff_limit: int | None = Field(default=None, description="Only 0 (the operator's).")
    template: TemplatePod = Field(default_factory=TemplatePod, description="The pod template.")


class JobTemplate(Model):
    """The Job the operator creates for each execution, as CronJob's jobTemplate: metadata
    (labels, annotations) and the pod template. The short form's fields (image, command,
    env, ...) fill the container named job; ownerReferences, backoffLimit, restartPolicy
    and BARBEQUE_* variables stay the operator's."""

    metadata: TemplateMetadata | None = Field(
        default=None, description="Labels and annotations of the Job itself."
    )
    spec: TemplateJobSpec = Field(default_factory=TemplateJobSpec, description="The Job's spec.")


# An image reference as container runtimes parse it (the grammar of distribution/reference):
# [registry[:port]/]repository[:tag][@digest]. The first part is a registry only when it
# looks like a host (a dot, a port, localhost); the repository is lowercase.
_DOMAIN_PART = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_REGISTRY = (
    rf"(?:localhost(?::[0-9]+)?|{_DOMAIN_PART}(?:\.{_DOMAIN_PART})+(?::[0-9]+)?"
    rf"|{_DOMAIN_PART}:[0-9]+|\[[a-fA-F0-9:]+\](?::[0-9]+)?)"
)
_PATH_PART = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_IMAGE_REFERENCE = re.compile(
    rf"^(?:{_REGISTRY}/)?(?P<repository>{_PATH_PART}(?:/{_PATH_PART})*)"
    r"(?::[\w][\w.-]{0,127})?"
    r"(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?$"
)


def image_reference_problem(image: str) -> str | None:
    """Why ``image`` is not an image reference a container runtime would pull, or None."""
    name = image.split("@", 1)[0]
    if len(name) > 255:
        return f"image {image[:60]!r}... is longer than 255 characters"
    if _IMAGE_REFERENCE.match(image) is None:
        return (
            f"image {image!r} is not a well-formed reference: expected "
            "[registry[:port]/]repository[:tag][@sha256:digest], the repository in lowercase"
        )
    return None


_TEMPLATE_POD = "self.?jobTemplate.?spec.?template.?spec"


class JobDefinitionSpec(Model):
    """A registered job of an application: what to run for each message."""

    model_config = cel(
        NO_BARBEQUE_ENV,
        (
            f"!({_TEMPLATE_POD}.?serviceAccountName.hasValue() && has(self.serviceAccountName))",
            "set spec.serviceAccountName or the jobTemplate's, not both",
        ),
    )

    description: str = Field(default="", description="What the job does, for people.")
    job_name: str | None = Field(
        default=None,
        min_length=1,
        max_length=253,
        description=(
            "The job's name in messages when it cannot be the resource name: cookpad/barbeque "
            "job names are case-sensitive (e.g. NotifyAuthor). Defaults to metadata.name."
        ),
    )
    queue: str = Field(
        default="default", min_length=1, description="Name of the JobQueue it listens on."
    )
    image: str = Field(
        min_length=1,
        pattern=r"^[^\s]+$",
        description="Container image, e.g. registry.example.com/app:1.2.3.",
    )
    image_pull_policy: str | None = Field(
        default=None,
        pattern="^(Always|IfNotPresent|Never)$",
        description="Always, IfNotPresent or Never; unset lets Kubernetes choose by tag.",
    )
    command: list[str] = Field(
        default_factory=list, description="Entrypoint argv; empty keeps the image's."
    )
    args: list[str] = Field(default_factory=list, description="Arguments after command.")
    env: list[EnvVar] = Field(
        default_factory=list,
        description="Environment of the job's container, after the operator's BARBEQUE_* ones.",
    )
    env_from: list[EnvFromSource] = Field(
        default_factory=list, description="Secrets and ConfigMaps whose keys become variables."
    )
    resources: ResourceRequirements | None = Field(
        default=None, description="CPU and memory requests and limits of the job's container."
    )
    service_account_name: str | None = Field(
        default=None, description="The pod's ServiceAccount; unset means the namespace's default."
    )
    node_selector: dict[str, str] = Field(
        default_factory=dict, description="Node labels the pod must run on."
    )
    tolerations: list[Toleration] = Field(
        default_factory=list, description="Taints the pod tolerates."
    )
    pod_labels: dict[str, str] = Field(default_factory=dict, description="Extra pod labels.")
    pod_annotations: dict[str, str] = Field(
        default_factory=dict, description="Extra pod annotations."
    )
    security_context: ContainerSecurity | None = None
    active_deadline_seconds: int | None = Field(
        default=None, ge=1, description="Kill the job after this many seconds."
    )
    start_deadline_seconds: int = Field(
        default=600,
        ge=1,
        description="How long the container may fail to start once its node has the pod "
        "(image pull errors, a missing Secret or ConfigMap: ErrImagePull, ImagePullBackOff, "
        "CreateContainerConfigError, ...) before the execution ends as Error and its Job is "
        "deleted. Waiting for a node (capacity) does not count.",
    )
    ttl_seconds_after_finished: int = Field(
        default=3600,
        ge=0,
        description="Seconds a finished Job (and its pod) stays; logs are shipped to S3 first.",
    )
    retry: RetryPolicy | None = Field(
        default=None,
        description=(
            "Automatic retries after a failure. Unset means none, as in cookpad/barbeque "
            "without a retry config; `retry: {}` means 3 retries from 15 s."
        ),
    )
    slack: SlackNotification | None = None
    history: HistoryPolicy | None = None
    job_template: JobTemplate | None = Field(
        default=None,
        description="The full Job to create: labels, annotations and the pod template "
        "(volumes, sidecars, affinity, priorityClassName, ...). The fields above fill its "
        "container named job.",
    )


class JobDefinitionStatus(Model):
    """What the operator observed about the definition."""

    observed_generation: int | None = Field(
        default=None, description="The metadata.generation the operator last checked."
    )
    conditions: Conditions = Field(default_factory=list)


class JobDefinition(Resource):
    """A job an application registers; its name is the job name used in messages."""

    kind: ClassVar[str] = "JobDefinition"
    short_names: ClassVar[list[str]] = ["definition", "definitions", "jd"]
    namespaced: ClassVar[bool] = True
    printer_columns: ClassVar[list[dict[str, Any]]] = [
        column("Queue", ".spec.queue"),
        column("Image", ".spec.image"),
        READY_COLUMN,
        column("Retries", ".spec.retry.limit", "integer"),
        column("Slack", ".spec.slack.channel", wide=True),
        AGE_COLUMN,
    ]

    api_version: str = Field(default=API_VERSION, alias="apiVersion")
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: JobDefinitionSpec
    status: JobDefinitionStatus = Field(default_factory=JobDefinitionStatus)


# ---------------------------------------------------------------------------------------------
# JobExecution


class Phase(enum.StrEnum):
    """Where an execution is in its life."""

    PENDING = "Pending"
    SCHEDULED = "Scheduled"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    ERROR = "Error"

    @property
    def finished(self) -> bool:
        return self in (Phase.SUCCEEDED, Phase.FAILED, Phase.ERROR)


FINISHED_PHASES = frozenset(p.value for p in Phase if p.finished)
# A field selector for executions not finished yet (a missing phase matches too).
UNFINISHED_SELECTOR = ",".join(f"status.phase!={phase}" for phase in sorted(FINISHED_PHASES))


# What an execution runs is fixed once recorded: the spec fields below may not change
# (cancel may, one way). Optional ones may not be added or removed either. spec.message
# is not among them: the API server shows CEL no field of untyped (any JSON) value.
EXECUTION_RECORD = ("application", "job", "queue", "messageId", "attempt")
EXECUTION_RECORD_OPTIONAL = (
    "originalMessageId",
    "rawMessage",
    "sentTimestamp",
    "notBefore",
    "retryOf",
    "invalidReason",
)


def _unchanged(field: str, optional: bool) -> str:
    same = f"self.{field} == oldSelf.{field}"
    if not optional:
        return same
    return f"(has(self.{field}) ? has(oldSelf.{field}) && {same} : !has(oldSelf.{field}))"


class JobExecutionSpec(Model):
    """The message an execution runs: immutable once recorded."""

    model_config = cel(
        (
            " && ".join(
                [_unchanged(f, False) for f in EXECUTION_RECORD]
                + [_unchanged(f, True) for f in EXECUTION_RECORD_OPTIONAL]
            ),
            "the spec of a JobExecution is immutable once recorded (only spec.cancel may be set)",
        ),
        ("!oldSelf.cancel || self.cancel", "spec.cancel cannot be undone"),
    )

    application: str = Field(description="The application (namespace) named by the message.")
    job: str = Field(description="The job (JobDefinition name) named by the message.")
    queue: str = Field(default="", description="The JobQueue the message came from.")
    message_id: str = Field(description="The SQS message id that caused this execution.")
    original_message_id: str | None = Field(
        default=None,
        description="For retries: the first execution's message id (BARBEQUE_MESSAGE_ID).",
    )
    message: Any = Field(
        default=None,
        description="The message, any JSON value.",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )
    raw_message: str | None = Field(
        default=None, description="The undecodable body of a bad message (truncated)."
    )
    sent_timestamp: int | None = Field(
        default=None, description="SQS SentTimestamp of the message, epoch milliseconds."
    )
    not_before: datetime | None = Field(
        default=None, description="Do not start before this time; the execution is Scheduled."
    )
    attempt: int = Field(
        default=0, ge=0, description="0 for the first run; retries count 1, 2, ..."
    )
    retry_of: str | None = Field(default=None, description="Name of the execution this retries.")
    invalid_reason: str | None = Field(
        default=None, description="Set when the message could not be used; the execution is Error."
    )
    cancel: bool = Field(
        default=False,
        description=(
            "Set to true to stop the execution: its Job is deleted and it ends Failed with "
            "reason Cancelled, without automatic retry."
        ),
    )


class LogLocation(Model):
    """Where the execution's message and logs are kept."""

    bucket: str = Field(description="The S3 bucket.")
    prefix: str = Field(description="Key prefix: <application>/<job>/<message-id>/.")
    url: str = Field(description="s3://bucket/prefix")
    uploaded: bool = Field(default=False, description="All files are in S3.")


class JobExecutionStatus(Model):
    """What happened to the execution."""

    phase: Phase | None = Field(default=None, description="Where the execution is in its life.")
    reason: str | None = Field(default=None, description="One CamelCase word saying why.")
    message: str | None = Field(default=None, description="The reason in words.")
    job_name: str | None = Field(default=None, description="The batch/v1 Job running it.")
    pod_name: str | None = Field(default=None, description="The pod that ran it.")
    exit_code: int | None = Field(default=None, description="The container's exit code.")
    started_at: datetime | None = Field(default=None, description="When the pod started.")
    finished_at: datetime | None = Field(default=None, description="When it finished.")
    duration: str | None = Field(default=None, description="Wall time from start to finish.")
    retried_by: str | None = Field(default=None, description="The execution that retries this one.")
    logs: LogLocation | None = Field(
        default=None, description="Where the message, logs and summary are kept in S3."
    )
    notified: bool | None = Field(default=None, description="Slack was told of the outcome.")
    conditions: Conditions = Field(default_factory=list)


class JobExecution(Resource):
    """One run of a JobDefinition, caused by one message; named from the SQS message id."""

    kind: ClassVar[str] = "JobExecution"
    short_names: ClassVar[list[str]] = ["execution", "executions", "jx"]
    namespaced: ClassVar[bool] = True
    printer_columns: ClassVar[list[dict[str, Any]]] = [
        column("Job", ".spec.job"),
        STATUS_COLUMN,
        column("Attempt", ".spec.attempt", "integer"),
        column("Exit", ".status.exitCode", "integer"),
        column("Duration", ".status.duration"),
        AGE_COLUMN,
        column("Queue", ".spec.queue", wide=True),
        column("Reason", ".status.reason", wide=True),
        column("Message", ".status.message", wide=True),
        column("Retried-By", ".status.retriedBy", wide=True),
        column("Logs", ".status.logs.url", wide=True),
    ]
    # Field selectors the API server serves (`kubectl get executions --field-selector
    # status.phase=Failed`); the operator watches only `UNFINISHED_SELECTOR`, so finished
    # history never reaches its memory.
    selectable_fields: ClassVar[list[dict[str, str]]] = [
        {"jsonPath": ".status.phase"},
        {"jsonPath": ".spec.job"},
        {"jsonPath": ".spec.queue"},
    ]

    api_version: str = Field(default=API_VERSION, alias="apiVersion")
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: JobExecutionSpec
    status: JobExecutionStatus = Field(default_factory=JobExecutionStatus)

    @property
    def phase(self) -> Phase | None:
        return Phase(self.status.phase) if self.status.phase else None


CUSTOM_RESOURCES: tuple[type[JobQueue] | type[JobDefinition] | type[JobExecution], ...] = (
    JobQueue,
    JobDefinition,
    JobExecution,
)
