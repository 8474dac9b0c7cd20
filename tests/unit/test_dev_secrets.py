"""`slot dev` makes its own secrets each run (private to the user) and lets a later run join."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from slot.devstack import SECRETS_FILE, StackError, settings_env, with_dev_secrets
from slot.settings import Settings


def bare(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path).model_copy(
        update={"twilio_auth_token": None, "internal_token": None}
    )


def revealed(settings: Settings) -> tuple[str, str]:
    assert settings.twilio_auth_token is not None and settings.internal_token is not None
    return (
        settings.twilio_auth_token.get_secret_value(),
        settings.internal_token.get_secret_value(),
    )


def test_a_fresh_stack_generates_new_secrets_each_run(tmp_path: Path) -> None:
    first = revealed(with_dev_secrets(bare(tmp_path), join_running=False))
    assert (tmp_path / SECRETS_FILE).stat().st_mode & 0o777 == 0o600
    second = revealed(with_dev_secrets(bare(tmp_path), join_running=False))
    assert all(len(secret) >= 16 for secret in first + second)
    assert set(first).isdisjoint(second)


def test_joining_a_running_stack_reads_its_secrets(tmp_path: Path) -> None:
    started = revealed(with_dev_secrets(bare(tmp_path), join_running=False))
    assert revealed(with_dev_secrets(bare(tmp_path), join_running=True)) == started


def test_joining_without_the_secrets_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StackError, match="SLOT_INTERNAL_TOKEN"):
        with_dev_secrets(bare(tmp_path), join_running=True)


def test_secrets_from_the_environment_win_and_reach_the_children(tmp_path: Path) -> None:
    mine = bare(tmp_path).model_copy(
        update={
            "twilio_auth_token": SecretStr("twilio-from-env"),
            "internal_token": SecretStr("internal-from-env-0123"),
        }
    )
    kept = with_dev_secrets(mine, join_running=False)
    assert revealed(kept) == ("twilio-from-env", "internal-from-env-0123")
    assert not (tmp_path / SECRETS_FILE).exists()
    env = settings_env(kept)
    assert env["TWILIO_AUTH_TOKEN"] == "twilio-from-env"
    assert env["SLOT_INTERNAL_TOKEN"] == "internal-from-env-0123"
    assert not any("*" in value for value in env.values())
