"""The dev stack's own secrets, one set per data folder, so `slot dev` works out of the box.

Outside the dev stack every secret comes from the environment and a process without one
refuses to start; the dev stack instead makes each once, keeps it in a 0600 file under the data
folder (never in the repo: `.slot-data` is ignored) and reuses it, so payloads written before a
restart of `slot dev` still decrypt after it.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path

from pydantic import SecretStr

from slot.payload_codec import Keyring
from slot.settings import Settings

PAYLOAD_KEYS_FILE = "payload-keys"
CODEC_TOKEN_FILE = "codec-token"
API_TOKEN_FILE = "api-token"
DEV_KEY_PREFIX = "dev-"
"""Each data folder's key gets an id of its own, so data under another folder's key says so."""


def dev_secret(data_dir: Path, name: str, make: Callable[[], str], *, create: bool) -> str | None:
    """The secret kept in `data_dir/name`, made by `make` when missing (if `create`)."""
    path = data_dir / name
    if path.exists():
        return path.read_text().strip()
    if not create:
        return None
    data_dir.mkdir(parents=True, exist_ok=True)
    value = make()
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(descriptor, "w") as file:
        file.write(value + "\n")
    return value


def new_dev_key() -> str:
    return Keyring.new_entry(DEV_KEY_PREFIX + secrets.token_hex(4))


def use_dev_secrets(settings: Settings, *, create: bool = True) -> Settings:
    """Fill in the secrets the environment did not set from the data folder (in place).

    `create=False` is for tools that talk to a dev stack already running: they read its
    secrets but never make new ones."""
    folder = settings.data_dir
    if settings.payload_keys is None:
        keys = dev_secret(folder, PAYLOAD_KEYS_FILE, new_dev_key, create=create)
        settings.payload_keys = SecretStr(keys) if keys else None
    if settings.codec_token is None:
        token = dev_secret(
            folder, CODEC_TOKEN_FILE, lambda: secrets.token_urlsafe(32), create=create
        )
        settings.codec_token = SecretStr(token) if token else None
    if settings.api_token is None:
        token = dev_secret(folder, API_TOKEN_FILE, lambda: secrets.token_urlsafe(32), create=create)
        settings.api_token = SecretStr(token) if token else None
    return settings
