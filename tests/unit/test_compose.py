"""docker-compose.yml cannot run here (no Docker engine); check the production shape it promises."""

from pathlib import Path

import yaml

COMPOSE = Path(__file__).resolve().parents[2] / "docker-compose.yml"


def load() -> dict[str, dict[str, object]]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    services = data["services"]
    assert isinstance(services, dict)
    return services


def test_compose_has_the_production_services() -> None:
    assert set(load()) == {
        "postgresql",
        "temporal",
        "temporal-ui",
        "redis",
        "qdrant",
        "worker",
        "edge",
    }


def test_slot_services_point_at_the_stack_and_take_secrets_from_the_environment() -> None:
    services = load()
    for name in ("worker", "edge"):
        env = services[name]["environment"]
        assert isinstance(env, dict)
        assert env["SLOT_TEMPORAL_ADDRESS"] == "temporal:7233"
        assert str(env["TWILIO_AUTH_TOKEN"]).startswith("${TWILIO_AUTH_TOKEN")
        assert "postgresql" in str(env["SLOT_DATABASE_URL"])
    assert services["worker"]["command"] == ["python", "worker.py"]
    assert services["edge"]["command"] == ["python", "-m", "media_edge.app"]


def test_no_secret_is_written_in_the_file() -> None:
    text = COMPOSE.read_text()
    for line in text.splitlines():
        if any(word in line.upper() for word in ("PASSWORD:", "TOKEN:", "API_KEY:")):
            assert "${" in line, line


def test_only_the_edges_public_listener_is_published() -> None:
    services = load()
    edge = services["edge"]
    assert edge["ports"] == ["8080:8080"]
    env = edge["environment"]
    assert isinstance(env, dict)
    assert str(env["SLOT_INTERNAL_TOKEN"]).startswith("${SLOT_INTERNAL_TOKEN:?")
    assert env["SLOT_EDGE_INTERNAL_PORT"] not in ("8080",)
    assert env["SLOT_EDGE_INTERNAL_BASE_URL"] == f"http://edge:{env['SLOT_EDGE_INTERNAL_PORT']}"
    for name, service in services.items():
        ports = service.get("ports", [])
        assert isinstance(ports, list)
        for port in ports:
            assert name == "edge" and str(port).split(":")[-1] == "8080", (name, port)
