"""`slot temporal setup`: make a Temporal namespace ready for Slot's calls.

A new Temporal knows none of Slot's search attributes, and starting a call's workflow fails
until it does (every inbound webhook would answer 503). The compose file runs this step once,
before the worker and the edge; it waits for Temporal to come up, and running it again changes
nothing.
"""

from __future__ import annotations

import asyncio
import time

from temporalio.client import Client

from slot.settings import Settings
from slot.temporal import SearchAttributeError, connect, ensure_search_attributes

RETRY_EVERY_S = 1.0


class TemporalSetupError(RuntimeError):
    """Temporal did not become ready for Slot; the message names the address and the cause."""


async def setup_temporal(settings: Settings, *, wait_s: float = 120.0) -> list[str]:
    """Register Slot's search attributes on `settings`' namespace once Temporal answers,
    retrying for up to `wait_s` (the namespace may still be being created); returns the names
    registered now (none when they were all there)."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            client: Client = await connect(settings)
            return await ensure_search_attributes(client)
        except SearchAttributeError as error:
            raise TemporalSetupError(str(error)) from error
        except Exception as error:
            if time.monotonic() >= deadline:
                raise TemporalSetupError(
                    f"Temporal at {settings.temporal_address} (namespace "
                    f"{settings.temporal_namespace!r}) not ready within {wait_s:g} s: "
                    f"{_first_line(error)}"
                ) from error
        await asyncio.sleep(RETRY_EVERY_S)


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
