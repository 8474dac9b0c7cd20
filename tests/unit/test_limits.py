"""The media edge's socket caps: overall and per remote address, refused with a clear reason."""

from __future__ import annotations

from media_edge.limits import Refusal, StreamCounts, server_config
from slot.settings import Settings


def test_each_source_is_capped_and_a_closed_socket_frees_its_place() -> None:
    counts = StreamCounts(max_streams=10, max_per_source=2)
    assert counts.open("10.0.0.1") is None
    assert counts.open("10.0.0.1") is None
    assert counts.open("10.0.0.1") == Refusal(429, "too many media streams from 10.0.0.1 (limit 2)")
    assert counts.open("10.0.0.2") is None
    counts.close("10.0.0.1")
    assert counts.open("10.0.0.1") is None
    assert counts.total == 3 and dict(counts.by_source) == {"10.0.0.1": 2, "10.0.0.2": 1}


def test_the_edge_as_a_whole_is_capped_whatever_the_source() -> None:
    counts = StreamCounts(max_streams=3, max_per_source=2)
    for source in ("a", "b", "c"):
        assert counts.open(source) is None
    refusal = counts.open("d")
    assert refusal == Refusal(503, "media edge at its limit of 3 open media streams")
    for source in ("a", "b", "c"):
        counts.close(source)
    assert counts.total == 0 and not counts.by_source


def test_the_server_reads_no_message_larger_than_the_setting() -> None:
    settings = Settings(media_max_message_bytes=20_000, edge_port=9999)
    config = server_config(object(), settings, log_level="info")
    assert config.ws_max_size == 20_000
    assert (config.host, config.port, config.log_level) == ("127.0.0.1", 9999, "info")
    assert config.timeout_graceful_shutdown == Settings().edge_shutdown_grace_s == 10
    assert Settings().media_max_message_bytes == 16 * 1024
