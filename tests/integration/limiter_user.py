"""One user of the dialling limiter in its own process, for `test_redis_limiter`.

`python -m tests.integration.limiter_user REDIS_URL KEY COUNT RATE START_US` says `ready` and
waits for a line on stdin (so every user starts together), then asks for COUNT slots, the k-th
at START_US + k ms on the callers' clock (faster than the pace allows), and prints the slots it
got, one per line, in microseconds. REDIS_URL `local` uses this process's own in-process limiter
instead.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta

from activities.campaign import DialLimiter, LocalDialLimiter
from activities.redis_limiter import RedisDialLimiter


def main(url: str, key: str, count: int, rate: float, start_us: int) -> None:
    limiter: DialLimiter = (
        LocalDialLimiter() if url == "local" else RedisDialLimiter.from_url(url, key)
    )
    start = datetime.fromtimestamp(start_us / 1_000_000, UTC)
    print("ready", flush=True)
    sys.stdin.readline()
    for k in range(count):
        slot = limiter.reserve(start + timedelta(milliseconds=k), rate)
        print(round(slot.timestamp() * 1_000_000), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5]))
