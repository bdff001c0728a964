"""Amazon S3, where each execution's message and logs are kept."""

from __future__ import annotations

import asyncio
import functools
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from barbeque.adapters import aws


class S3Error(Exception):
    """An S3 call failed."""


class S3:
    def __init__(
        self, region: str, endpoint_url: str | None, bucket: str, max_pool: int = 32
    ) -> None:
        self.bucket = bucket
        self._client = aws.client(
            "s3", region, endpoint_url, max_pool, s3={"addressing_style": "path"}
        )
        self.calls: dict[str, int] = {}

    async def _call(self, verb: str, fn: Any, **kwargs: Any) -> Any:
        self.calls[verb] = self.calls.get(verb, 0) + 1
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(None, functools.partial(fn, **kwargs))
        except (ClientError, BotoCoreError) as exc:
            raise S3Error(str(exc)) from exc

    async def ensure_bucket(self) -> None:
        try:
            await self._call("head_bucket", self._client.head_bucket, Bucket=self.bucket)
        except S3Error:
            await self._call("create_bucket", self._client.create_bucket, Bucket=self.bucket)

    async def put_text(self, key: str, text: str, content_type: str = "text/plain") -> None:
        await self._call(
            "put_object",
            self._client.put_object,
            Bucket=self.bucket,
            Key=key,
            Body=text.encode("utf-8"),
            ContentType=f"{content_type}; charset=utf-8",
        )

    async def get_text(self, key: str) -> str | None:
        try:
            result = await self._call(
                "get_object", self._client.get_object, Bucket=self.bucket, Key=key
            )
        except S3Error as exc:
            if "NoSuchKey" in str(exc) or "Not Found" in str(exc) or "404" in str(exc):
                return None
            raise
        body: bytes = await asyncio.get_running_loop().run_in_executor(None, result["Body"].read)
        return body.decode("utf-8", errors="replace")
