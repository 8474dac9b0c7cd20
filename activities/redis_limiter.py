"""The dialling pace shared through Redis: one bucket for every worker and campaign.

Twilio paces outbound calls per account (1 a second by default), so every worker of every
campaign must draw from the same bucket. The bucket is one Redis key holding the next free slot
(microseconds on the callers' clock, which is the workflows' clock); a Lua script reads and
moves it in one step, so two workers asking at once never get the same slot. It is a token
bucket holding one token, refilled every `1 / rate` seconds: slots are at least that far apart.
A slot is handed out, never waited for here: the workflow sleeps until it with a durable timer.
"""

from __future__ import annotations

from datetime import UTC, datetime

import redis

RESERVE = """
local at = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local free = tonumber(redis.call('GET', KEYS[1]) or '0')
local slot = math.max(at, free)
redis.call('SET', KEYS[1], string.format('%.0f', slot + interval))
redis.call('PEXPIRE', KEYS[1], math.floor((slot + interval - at) / 1000) + 60000)
return string.format('%.0f', slot)
"""
"""KEYS[1] the bucket; ARGV: the caller's time and the slot length, both in microseconds. The
key expires a minute after its last slot, so an idle bucket leaves nothing behind."""

DEFAULT_KEY = "slot:dial-pace"


def _micros(moment: datetime) -> int:
    return round(moment.timestamp() * 1_000_000)


class RedisDialLimiter:
    """`DialLimiter` over Redis (`SLOT_REDIS_URL`); every process sharing `key` shares the pace."""

    def __init__(self, client: redis.Redis, key: str = DEFAULT_KEY) -> None:
        self.client = client
        self.key = key
        self._reserve = client.register_script(RESERVE)

    @classmethod
    def from_url(cls, url: str, key: str = DEFAULT_KEY) -> RedisDialLimiter:
        return cls(redis.Redis.from_url(url, socket_timeout=5.0), key)

    def reserve(self, at: datetime, calls_per_second: float) -> datetime:
        interval = round(1_000_000 / calls_per_second)
        slot = self._reserve(keys=[self.key], args=[_micros(at), interval])
        return datetime.fromtimestamp(int(slot) / 1_000_000, UTC)
