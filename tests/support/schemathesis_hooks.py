"""schemathesis hooks for the stateful run: let some generated requests name real things.

Loaded by schemathesis's CLI from ``SCHEMATHESIS_HOOKS`` (this file's path), in its own
process. Generated names (application, job, queue) almost never exist, so every enqueue
would be a 404 and no scenario would get past its first step. With these hooks about half
of the enqueues and listings name the test's application, its jobs and its queue (read
from ``BARBEQUE_ST_APPLICATION``, ``BARBEQUE_ST_JOBS``, ``BARBEQUE_ST_QUEUE``), so the
links lead to executions that exist: status, retry and cancel of real messages.
"""

from __future__ import annotations

import os
from typing import Any

import schemathesis
from hypothesis import strategies as st

APPLICATION = os.environ.get("BARBEQUE_ST_APPLICATION", "")
JOBS = [j for j in os.environ.get("BARBEQUE_ST_JOBS", "").split(",") if j]
QUEUE = os.environ.get("BARBEQUE_ST_QUEUE", "")


def _is(context: Any, method: str, path: str) -> bool:
    operation = context.operation
    return (
        operation is not None
        and operation.method.upper() == method
        and operation.path == path
        and bool(APPLICATION and JOBS and QUEUE)
    )


@schemathesis.hook("flatmap_body")
def real_names_in_enqueues(context: Any, body: Any) -> st.SearchStrategy[Any]:
    if not _is(context, "POST", "/v2/job_executions") or not isinstance(body, dict):
        return st.just(body)
    real = st.sampled_from(JOBS).map(
        lambda job: {**body, "application": APPLICATION, "job": job, "queue": QUEUE}
    )
    return st.one_of(st.just(body), real)


@schemathesis.hook("flatmap_query")
def real_application_in_listings(context: Any, query: Any) -> st.SearchStrategy[Any]:
    if not _is(context, "GET", "/v1/job_executions") or not isinstance(query, dict | None):
        return st.just(query)
    base = query or {}
    # Statuses that the test's application surely has (an empty list leaves the list's
    # links with nothing to follow).
    real = st.sampled_from([None, "failed", "success"]).map(
        lambda status: {
            **{k: v for k, v in base.items() if k in ("page", "per_page")},
            "application": APPLICATION,
            **({"status": status} if status else {}),
        }
    )
    return st.one_of(st.just(query), real)
