"""How the Kubernetes adapter names the API server's refusals, through its real calls.

The client's ``ApiException`` is raised where the HTTP call would be made; what comes
out of ``Kube`` decides whether intake deletes an SQS message, so a 409 must say which
409 it was.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from barbeque.adapters.kube import (
    AlreadyExists,
    Conflict,
    Invalid,
    Kube,
    KubeError,
    NotFound,
    TransientError,
)

pytestmark = pytest.mark.unit

BODY = {"metadata": {"name": "m-1", "namespace": "shop"}, "spec": {}}


def status(code: int, reason: str, message: str = "") -> str:
    return json.dumps(
        {
            "kind": "Status",
            "apiVersion": "v1",
            "status": "Failure",
            "message": message or reason,
            "reason": reason,
            "code": code,
        }
    )


async def create_raising(code: int, body: str | None) -> KubeError:
    kube = Kube(client.ApiClient(), pool_size=1)

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise ApiException(status=code, reason="refused", body=body)

    kube._custom.create_namespaced_custom_object = refuse  # type: ignore[method-assign]
    try:
        with pytest.raises(KubeError) as caught:
            await kube.create_execution(BODY)
    finally:
        kube.close()
    return caught.value


async def test_a_409_already_exists_is_already_exists() -> None:
    error = await create_raising(409, status(409, "AlreadyExists", 'jobexecutions "m-1" exists'))
    assert type(error) is AlreadyExists
    assert error.status == 409


async def test_a_409_conflict_on_a_create_is_transient_not_already_exists() -> None:
    error = await create_raising(
        409, status(409, "Conflict", "the object has been modified; please apply your changes")
    )
    assert type(error) is Conflict
    assert isinstance(error, TransientError)
    assert not isinstance(error, AlreadyExists)


@pytest.mark.parametrize("body", [None, "", "upstream connect error", "[]", '{"reason": 7}'])
async def test_a_409_without_a_readable_status_is_not_taken_for_already_exists(
    body: str | None,
) -> None:
    error = await create_raising(409, body)
    assert type(error) is Conflict


@pytest.mark.parametrize(
    ("code", "reason", "kind"),
    [
        (404, "NotFound", NotFound),
        (400, "BadRequest", Invalid),
        (422, "Invalid", Invalid),
        (429, "TooManyRequests", TransientError),
        (503, "ServiceUnavailable", TransientError),
    ],
)
async def test_other_statuses_keep_their_meaning(
    code: int, reason: str, kind: type[KubeError]
) -> None:
    error = await create_raising(code, status(code, reason))
    assert type(error) is kind
