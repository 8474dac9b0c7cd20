"""`slot api`: the HTTP API as a process. It refuses to start, with one line naming what is
missing, without `SLOT_API_TOKEN`, without payload keys (leads and transcripts are sealed with
them), or on a database whose schema is behind; then it connects to Temporal and serves on
`SLOT_API_HOST:SLOT_API_PORT` (127.0.0.1:8300). The checks come before the heavy imports, so a
refusal is quick."""

from __future__ import annotations

import asyncio
import logging

from slot.credentials import MissingCredential, api_token
from slot.settings import Settings, get_settings

log = logging.getLogger("slot.api")


async def serve(settings: Settings, token: str) -> None:
    import uvicorn

    from activities.campaign import DoNotCallList
    from activities.records import make_engine
    from slot.api.app import create_app
    from slot.api.store import Store
    from slot.payload_codec import require_keyring
    from slot.temporal import connect

    client = await connect(settings)
    engine = make_engine(settings.database_url)
    store = Store(engine, require_keyring(settings), DoNotCallList(settings.database_url))
    app = create_app(settings, client, store, token)
    config = uvicorn.Config(
        app, host=settings.api_host, port=settings.api_port, log_level="warning"
    )
    log.warning("api ready on http://%s:%d (docs at /docs)", settings.api_host, settings.api_port)
    try:
        await uvicorn.Server(config).serve()
    finally:
        engine.dispose()
        store.dnc.close()


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = get_settings()
    try:
        token = api_token(settings)
    except MissingCredential as error:
        raise SystemExit(f"api not started: {error}") from None

    from slot.database import SchemaBehind, check_at_start
    from slot.payload_codec import PayloadKeyError, require_keyring

    try:
        require_keyring(settings)
        check_at_start(settings.database_url)
    except (PayloadKeyError, SchemaBehind) as error:
        raise SystemExit(f"api not started: {error}") from None
    asyncio.run(serve(settings, token))


if __name__ == "__main__":
    main()
