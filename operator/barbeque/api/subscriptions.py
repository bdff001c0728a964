"""SNSSubscription: an SNS topic fanned out to a job definition, as cookpad/barbeque's
sns_subscriptions rows.

It lives in the application's namespace, beside the JobDefinition it feeds, so the team
that owns the job owns its subscriptions (and RBAC on the namespace covers both). The
operator subscribes the JobQueue's SQS queue to the topic and lets the topic send to it
(the queue policy); a ``Notification`` from the topic on that queue runs every definition
subscribed to it there.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field

from barbeque.api.models import (
    AGE_COLUMN,
    API_VERSION,
    STATUS_COLUMN,
    Conditions,
    Model,
    ObjectMeta,
    Resource,
    column,
)

TOPIC_ARN_PATTERN = r"^arn:aws[a-z-]*:sns:[a-z0-9-]+:[0-9]{12}:[A-Za-z0-9_-]{1,256}(\.fifo)?$"
FINALIZER = "barbeque.dev/sns-unsubscribe"


class SNSSubscriptionSpec(Model):
    """Which topic feeds which job, through which queue."""

    topic_arn: str = Field(
        description="The SNS topic, e.g. arn:aws:sns:us-east-1:123456789012:orders.",
        pattern=TOPIC_ARN_PATTERN,
    )
    queue: str = Field(
        min_length=1,
        description="Name of the JobQueue whose SQS queue is subscribed to the topic.",
    )
    job: str = Field(
        min_length=1,
        description="The job (JobDefinition name, or its jobName) in this namespace that "
        "runs for each message of the topic; BARBEQUE_MESSAGE is the SNS Message.",
    )


class SNSSubscriptionStatus(Model):
    """What the operator did about the subscription."""

    phase: str | None = Field(default=None, description="Subscribed or Error.")
    message: str | None = Field(default=None, description="Why it is not subscribed.")
    subscription_arn: str | None = Field(
        default=None, description="The SNS subscription of the queue to the topic."
    )
    queue_arn: str | None = Field(default=None, description="The subscribed SQS queue.")
    observed_generation: int | None = Field(
        default=None, description="The metadata.generation the status describes."
    )
    conditions: Conditions = Field(default_factory=list)


class SNSSubscription(Resource):
    """An SNS topic whose messages run a job of this application (namespace)."""

    kind: ClassVar[str] = "SNSSubscription"
    # Not "subscription(s)": OLM and Knative Eventing name their kinds so.
    short_names: ClassVar[list[str]] = ["snssub", "snssubs"]
    namespaced: ClassVar[bool] = True
    printer_columns: ClassVar[list[dict[str, Any]]] = [
        column("Topic", ".spec.topicArn"),
        column("Queue", ".spec.queue"),
        column("Job", ".spec.job"),
        STATUS_COLUMN,
        AGE_COLUMN,
        column("Message", ".status.message", wide=True),
    ]

    api_version: str = Field(default=API_VERSION, alias="apiVersion")
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: SNSSubscriptionSpec
    status: SNSSubscriptionStatus = Field(default_factory=SNSSubscriptionStatus)
