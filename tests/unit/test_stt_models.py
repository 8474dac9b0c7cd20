"""The edge's STT model is chosen by a setting (env SLOT_STT_MODEL); an unknown name is refused."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from pydantic import ValidationError

from media_edge.moonshine_stt import MoonshineSTT
from media_edge.stt import WhisperSTT
from media_edge.stt_models import STT_MODELS, embedded_stt
from slot.settings import Settings


def test_the_model_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().stt_model == "moonshine-base"
    monkeypatch.setenv("SLOT_STT_MODEL", "whisper-tiny")
    assert Settings().stt_model == "whisper-tiny"
    assert set(STT_MODELS) == {"whisper-tiny", "moonshine-base"}


def test_an_unknown_model_is_refused_with_the_names_it_could_be(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SLOT_STT_MODEL", "whisper-large")
    with pytest.raises(ValidationError, match="whisper-tiny"):
        Settings()


def test_moonshine_base_is_the_edge_default_and_whisper_tiny_the_other_choice() -> None:
    """Moonshine base was chosen on the dev corpus (`slot eval stt`: fewer word errors, less CPU
    a turn); Whisper tiny.en, English-only, stays one setting away."""
    with ThreadPoolExecutor(1) as executor:
        assert isinstance(embedded_stt(Settings().stt_model, executor), MoonshineSTT)
        whisper = embedded_stt("whisper-tiny", executor)
    assert isinstance(whisper, WhisperSTT)
    assert not whisper._model.model.is_multilingual
