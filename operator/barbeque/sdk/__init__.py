"""Python SDK for the Barbeque Web API (cookpad/barbeque-compatible, plus our additions).

from barbeque.sdk import Client

with Client("https://barbeque.example.com", token="...") as client:
    message_id = client.enqueue("SendMail", {"user_id": 1}, application="shop")
    execution = client.wait(message_id, timeout=600)
    assert execution.status == "success"
"""

from barbeque.sdk.client import (
    FINAL_STATUSES,
    BarbequeError,
    Client,
    Conflict,
    Execution,
    ExecutionSummary,
    Forbidden,
    InvalidParameter,
    NotFound,
    PayloadTooLarge,
    ServiceUnavailable,
    Unauthorized,
    WaitTimeout,
)

__all__ = [
    "FINAL_STATUSES",
    "BarbequeError",
    "Client",
    "Conflict",
    "Execution",
    "ExecutionSummary",
    "Forbidden",
    "InvalidParameter",
    "NotFound",
    "PayloadTooLarge",
    "ServiceUnavailable",
    "Unauthorized",
    "WaitTimeout",
]
