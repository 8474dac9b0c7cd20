"""Live events of calls and campaigns, as streams anyone with the keys can tail.

With `SLOT_REDIS_URL` set the streams are Redis Streams (`<prefix>:events:call:<id>`,
`<prefix>:events:campaign:<id>`), written by the edge (each call's events) and the worker (each
campaign's dials, results and progress), read by `slot watch` from any machine. Without Redis
they are in-process (`LocalLiveEvents`), and `slot watch` asks the edge and Temporal instead.

Caller words are personal data: each entry is sealed with Slot's payload keys (as call records
are), so Redis holds no transcript in clear, and a stream is capped and expires a day after its
last entry. Appending never raises: a Redis outage costs the live view, never a call.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any, Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from slot.payload_codec import Keyring

log = logging.getLogger("slot.live_events")

MAX_ENTRIES = 2000
"""Entries kept per stream (approximately): a long call's events, a campaign's recent ones."""
EXPIRE_S = 24 * 3600


def call_stream(call_id: str) -> str:
    return f"call:{call_id}"


def campaign_stream(campaign_id: str) -> str:
    return f"campaign:{campaign_id}"


class LiveEvents(Protocol):
    """Append-only streams of JSON objects, read back in order from an entry id ("0": all);
    a read waits at most `block_s` (under Redis's 5 s socket timeout) for a new entry."""

    async def append(self, stream: str, event: dict[str, Any]) -> None: ...

    async def read(
        self, stream: str, after: str, block_s: float
    ) -> list[tuple[str, dict[str, Any]]]: ...

    async def close(self) -> None: ...


async def tail(
    events: LiveEvents, stream: str, block_s: float = 1.0
) -> AsyncIterator[dict[str, Any]]:
    """Every event of `stream` from its start, then live ones, for as long as the caller reads."""
    after = "0"
    while True:
        for entry_id, event in await events.read(stream, after, block_s):
            after = entry_id
            yield event


class LocalLiveEvents:
    """The streams in this process (no Redis): for one process's own readers."""

    def __init__(self) -> None:
        self._streams: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self._changed = asyncio.Condition()

    async def append(self, stream: str, event: dict[str, Any]) -> None:
        async with self._changed:
            entries = self._streams[stream]
            entries.append(event)
            del entries[:-MAX_ENTRIES]
            self._changed.notify_all()

    async def read(
        self, stream: str, after: str, block_s: float
    ) -> list[tuple[str, dict[str, Any]]]:
        start = int(after)
        async with self._changed:
            if len(self._streams[stream]) <= start:
                try:
                    await asyncio.wait_for(
                        self._changed.wait_for(lambda: len(self._streams[stream]) > start),
                        timeout=block_s,
                    )
                except TimeoutError:
                    return []
            entries = self._streams[stream][start:]
        return [(str(start + i + 1), event) for i, event in enumerate(entries)]

    async def close(self) -> None:
        return None


class RedisLiveEvents:
    """Redis Streams, each entry's JSON sealed with the payload keys."""

    def __init__(self, client: aioredis.Redis, keyring: Keyring, prefix: str = "slot") -> None:
        self.client = client
        self.keyring = keyring
        self.prefix = prefix
        self._warned = False

    @classmethod
    def from_url(cls, url: str, keyring: Keyring, prefix: str = "slot") -> RedisLiveEvents:
        client = aioredis.Redis.from_url(url, socket_timeout=5.0, socket_connect_timeout=5.0)
        return cls(client, keyring, prefix)

    def key(self, stream: str) -> str:
        return f"{self.prefix}:events:{stream}"

    async def append(self, stream: str, event: dict[str, Any]) -> None:
        sealed = self.keyring.seal_text(json.dumps(event, separators=(",", ":")))
        key = self.key(stream)
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                pipe.xadd(key, {"e": sealed}, maxlen=MAX_ENTRIES, approximate=True)
                pipe.expire(key, EXPIRE_S)
                await pipe.execute()
        except (RedisError, OSError) as error:
            if not self._warned:
                log.warning("live events not written to Redis (calls go on): %s", error)
                self._warned = True
            return
        self._warned = False

    async def read(
        self, stream: str, after: str, block_s: float
    ) -> list[tuple[str, dict[str, Any]]]:
        block_ms = max(1, round(block_s * 1000))
        reply: Any = await self.client.xread({self.key(stream): after}, block=block_ms, count=500)
        entries: list[tuple[str, dict[str, Any]]] = []
        for _, items in reply or []:
            for entry_id, fields in items:
                text = self.keyring.open_text(fields[b"e"].decode())
                entries.append((entry_id.decode(), json.loads(text)))
        return entries

    async def close(self) -> None:
        await self.client.aclose()


def live_events_for(redis_url: str | None, keyring: Keyring, prefix: str = "slot") -> LiveEvents:
    """Redis Streams when a URL is configured, else in-process."""
    if redis_url:
        return RedisLiveEvents.from_url(redis_url, keyring, prefix)
    return LocalLiveEvents()
