"""The edge's STT model is chosen by a setting (env SLOT_STT_MODEL); an unknown name is refused."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from pydantic import ValidationError

from media_edge.stt import WhisperSTT
from media_edge.stt_models import STT_MODELS, embedded_stt
from slot.settings import Settings


def test_the_model_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().stt_model == "whisper-tiny"
    monkeypatch.setenv("SLOT_STT_MODEL", "moonshine-base")
    assert Settings().stt_model == "moonshine-base"
    assert set(STT_MODELS) == {"whisper-tiny", "moonshine-base"}


def test_an_unknown_model_is_refused_with_the_names_it_could_be(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SLOT_STT_MODEL", "whisper-large")
    with pytest.raises(ValidationError, match="moonshine-base"):
        Settings()


def test_whisper_tiny_is_the_edge_default() -> None:
    with ThreadPoolExecutor(1) as executor:
        stt = embedded_stt(Settings().stt_model, executor)
    assert isinstance(stt, WhisperSTT)
    assert not stt._model.model.is_multilingual
