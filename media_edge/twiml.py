"""TwiML that connects a call to the edge's Media Streams WebSocket."""

from __future__ import annotations

from collections.abc import Mapping
from xml.sax.saxutils import quoteattr


def stream_url(edge_url: str, path: str = "/twilio/media") -> str:
    """The WebSocket URL for an edge reachable at `edge_url` (http -> ws, https -> wss)."""
    base = edge_url.rstrip("/")
    if base.startswith("https://"):
        base = "wss://" + base.removeprefix("https://")
    elif base.startswith("http://"):
        base = "ws://" + base.removeprefix("http://")
    return base + path


def connect_stream(url: str, parameters: Mapping[str, str]) -> str:
    """`<Response><Connect><Stream>` with one `<Parameter>` per entry, every value XML-escaped."""
    params = "".join(
        f"<Parameter name={quoteattr(name)} value={quoteattr(value)}/>"
        for name, value in parameters.items()
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f"<Response><Connect><Stream url={quoteattr(url)}>{params}</Stream></Connect></Response>"
    )
