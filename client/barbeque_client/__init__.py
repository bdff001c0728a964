"""Python SDK and CLI of the Barbeque Web API (cookpad/barbeque-compatible, plus ours).

Installable alone (``pip install ./client``, distribution ``barbeque-client``, needing only
httpx and PyYAML); the server distribution ``barbeque-k8s`` ships it too, as
``barbeque.sdk``.

from barbeque_client import Client

with Client("https://barbeque.example.com", token="...") as client:
    message_id = client.enqueue("SendMail", {"user_id": 1}, application="shop")
    execution = client.wait(message_id, timeout=600)
    assert execution.status == "success"

``AsyncClient`` has the same methods for asyncio.
"""

__version__ = "0.1.0"

from barbeque_client.client import (
    FINAL_STATUSES,
    NO_RETRY,
    AsyncClient,
    BarbequeError,
    Client,
    Conflict,
    Execution,
    ExecutionSummary,
    Forbidden,
    InvalidParameter,
    LogChunk,
    NotFound,
    PayloadTooLarge,
    Retry,
    ServiceUnavailable,
    Unauthorized,
    WaitTimeout,
)

__all__ = [
    "FINAL_STATUSES",
    "NO_RETRY",
    "AsyncClient",
    "BarbequeError",
    "Client",
    "Conflict",
    "Execution",
    "ExecutionSummary",
    "Forbidden",
    "InvalidParameter",
    "LogChunk",
    "NotFound",
    "PayloadTooLarge",
    "Retry",
    "ServiceUnavailable",
    "Unauthorized",
    "WaitTimeout",
    "__version__",
]
