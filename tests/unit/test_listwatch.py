"""ListWatch's paginated LIST: the next page is requested while this one is handed out,
and a failure part way leaves no request behind."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any

import pytest

from barbeque.controller.listwatch import ListWatch

pytestmark = pytest.mark.unit


class PagedApi:
    """Three pages of two objects, chained by continue tokens; ``log`` records each LIST
    when the request goes out and each object when ListWatch hands it on."""

    path = "/apis/barbeque.dev/v1alpha1/jobexecutions"
    resource = "jobexecutions"
    PAGES = {None: ("t1", ["a", "b"]), "t1": ("t2", ["c", "d"]), "t2": ("", ["e", "f"])}

    def __init__(self) -> None:
        self.log: list[str] = []
        self.cancelled: list[str | None] = []
        self.hold: asyncio.Event | None = None

    async def list_page(self, params: dict[str, Any]) -> dict[str, Any]:
        token = params["continue"]
        self.log.append(f"list {token}")
        try:
            if token and self.hold is not None:
                await self.hold.wait()
        except asyncio.CancelledError:
            self.cancelled.append(token)
            raise
        following, names = self.PAGES[token]
        items = [{"metadata": {"namespace": "shop", "name": name}} for name in names]
        return {"items": items, "metadata": {"continue": following, "resourceVersion": "9"}}

    def stream(self, params: dict[str, Any]) -> AsyncGenerator[dict[str, Any], None]:
        raise NotImplementedError

    async def close(self) -> None:
        pass


async def test_the_next_page_is_asked_for_before_this_one_is_handed_out() -> None:
    api = PagedApi()
    watch = ListWatch(api, on_event=lambda kind, body: api.log.append(body["metadata"]["name"]))
    await watch.relist()
    assert api.log == ["list None", "list t1", "a", "b", "list t2", "c", "d", "e", "f"]
    assert watch.resource_version == "9"
    assert sorted(watch.known) == [("shop", name) for name in "abcdef"]


async def test_a_failure_while_handing_out_a_page_cancels_the_request_ahead() -> None:
    api = PagedApi()
    api.hold = asyncio.Event()

    def refuse(kind: str, body: dict[str, Any]) -> None:
        raise RuntimeError("handler failed")

    watch = ListWatch(api, on_event=refuse)
    with pytest.raises(RuntimeError, match="handler failed"):
        await watch.relist()
    assert api.cancelled == ["t1"]
    assert watch.resource_version is None
    assert watch.known == {}
