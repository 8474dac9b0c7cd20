"""Which voice a call speaks with (SLOT_TTS): the embedded one, or a streaming service's
connection per call (Cartesia Sonic, Deepgram Aura-2) with the embedded voice as its fallback.

Read at start-up: a missing key stops the edge with one line naming the variable, and so does a
key the service refuses at its first connection; an unreachable service does not (utterances
fall back to Piper until it answers).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from media_edge import aura_tts, cartesia_tts
from media_edge.aura_tts import AuraConfig, AuraVoice
from media_edge.cartesia_tts import CartesiaConfig, CartesiaVoice
from media_edge.tts import PhoneSpeech
from media_edge.tts_stream import CallVoice, LineCache
from slot.settings import Settings

VoiceConfig = CartesiaConfig | AuraConfig
OpenVoice = Callable[[logging.LoggerAdapter[logging.Logger]], CallVoice]


def voice_config(settings: Settings) -> VoiceConfig | None:
    """The streaming voice's configuration (raises `VoiceConfigError` without its key)."""
    if settings.tts == "cartesia":
        return CartesiaConfig.from_env(settings)
    if settings.tts == "aura":
        return AuraConfig.from_env(settings)
    return None


async def check_voice_key(config: VoiceConfig) -> None:
    """The first connection, at start-up: raises `VoiceConfigError` if the key is refused."""
    if isinstance(config, CartesiaConfig):
        await cartesia_tts.check_key(config)
    else:
        await aura_tts.check_key(config)


def voice_factory(config: VoiceConfig | None, fallback: PhoneSpeech) -> OpenVoice | None:
    """Opens each call's streaming voice (its own socket); the SDK client and the fixed lines
    it spoke are shared by the edge's calls."""
    if config is None:
        return None
    lines = LineCache()
    if isinstance(config, CartesiaConfig):
        cartesia = config.client()

        def open_cartesia(log: logging.LoggerAdapter[logging.Logger]) -> CallVoice:
            return CartesiaVoice(config, fallback=fallback, lines=lines, log=log, client=cartesia)

        return open_cartesia
    deepgram = config.client()

    def open_aura(log: logging.LoggerAdapter[logging.Logger]) -> CallVoice:
        return AuraVoice(config, fallback=fallback, lines=lines, log=log, client=deepgram)

    return open_aura
