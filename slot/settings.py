"""Slot's configuration, read from the environment (prefix `SLOT_`), never from files in the repo.

Every delay the workflows wait on is configurable so tests can run days-long timers in seconds.
"""

from __future__ import annotations

import socket
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from workflows.messages import CallTimers

REPO_ROOT = Path(__file__).resolve().parent.parent

STTModel = Literal["whisper-tiny", "moonshine-base"]
"""The embedded speech-to-text models (`media_edge.stt_models`), each shipped in a PyPI wheel."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SLOT_", extra="ignore")

    data_dir: Path = REPO_ROOT / ".slot-data"
    playbooks_dir: Path = REPO_ROOT / "playbooks"
    personas_dir: Path = REPO_ROOT / "personas"

    temporal_address: str = "127.0.0.1:7233"
    temporal_namespace: str = "default"
    temporal_ui_port: int = 8233
    task_queue: str = "slot-calls"

    edge_host: str = "127.0.0.1"
    edge_port: int = 8080
    edge_public_url: str | None = None
    """URL Twilio reaches the edge at (https/wss in production); defaults to http://host:port."""
    edge_id: str | None = None
    """Names this edge's own task queue (`edge-<id>`); defaults to host and port, so an edge
    restarted in the same place answers for the calls its predecessor held."""
    edge_internal_host: str = "127.0.0.1"
    """The edge's internal listener (`say`, `events`): never the one Twilio reaches."""
    edge_internal_port: int = 8081
    edge_internal_base_url: str | None = None
    """URL workers reach the internal listener at; defaults to http://internal_host:port."""

    twilio_auth_token: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("TWILIO_AUTH_TOKEN", "twilio_auth_token")
    )
    """Checks Twilio's signatures (and signs the simulator's); required by the edge."""
    internal_token: SecretStr | None = None
    """`SLOT_INTERNAL_TOKEN`: the bearer credential of the edge's internal listener."""
    stream_token_ttl_s: float = Field(default=60.0, gt=0)
    """How long the TwiML's media stream token stays good: Twilio connects within seconds."""

    simulator_host: str = "127.0.0.1"
    simulator_port: int = 8090
    twilio_api_base: str | None = None
    """Twilio REST base URL; defaults to the local phone simulator."""
    twilio_account_sid: str = "AC00000000000000000000000000000000"
    agent_phone_number: str = "+15550100000"
    transfer_number: str | None = None
    """`SLOT_TRANSFER_NUMBER`: the person (a desk, a queue) a `transfer` outcome dials."""
    hand_over_wait_s: float = Field(default=20.0, gt=0)
    """How long the edge keeps a line open after the transfer line for Twilio to take the call
    (the workflow's `<Dial>`); then it hangs up."""

    default_script: str = "solar_survey"

    tts_provider: Literal["piper", "espeak"] = "piper"
    """The embedded voice (SLOT_TTS_PROVIDER): it speaks when SLOT_TTS=piper, and it is the
    streaming voice's fallback."""
    tts: Literal["piper", "cartesia", "aura"] = "piper"
    """Text-to-speech (SLOT_TTS): the embedded voice, or one streaming connection per call to
    Cartesia Sonic (key from CARTESIA_API_KEY) or Deepgram Aura-2 (DEEPGRAM_API_KEY)."""
    tts_first_audio_budget_ms: int = Field(default=800, ge=50)
    """How long an utterance waits for the streaming voice's first audio (from its first text)
    before the embedded voice speaks it instead."""
    cartesia_url: str = "https://api.cartesia.ai"
    """Cartesia's base URL (its WebSocket is the same host over wss, at /tts/websocket)."""
    cartesia_model: str = "sonic-3"
    cartesia_voice: str = "6ccbfb76-1fc6-48f7-b71d-91ac6298247b"
    """A Cartesia voice id."""
    aura_url: str = "https://api.deepgram.com"
    """Deepgram's base URL for Aura-2 (its WebSocket is the same host over wss, /v1/speak)."""
    aura_model: str = "aura-2-thalia-en"
    stt: Literal["whisper", "deepgram", "flux"] = "whisper"
    """Speech-to-text: embedded Whisper per segment, or one Deepgram stream per call (Nova-3,
    or Flux as the end-of-turn source); Whisper stays loaded as the fallback. The key comes only
    from DEEPGRAM_API_KEY."""
    deepgram_url: str = "https://api.deepgram.com"
    """Deepgram's base URL (https; its WebSockets are the same host over wss)."""
    deepgram_model: str = "nova-3"
    deepgram_endpointing_ms: int = Field(default=300, ge=10)
    """Deepgram's own pause detection (`speech_final`), below the edge's script wait (450 ms)."""
    deepgram_utterance_end_ms: int = Field(default=1000, ge=1000)
    """Gap after the last word that ends the turn (`UtteranceEnd`); Deepgram's minimum is 1000."""
    deepgram_keepalive_s: float = Field(default=4.0, gt=0.0)
    """`KeepAlive` after this long without audio (Deepgram closes an idle stream after ~10 s)."""
    deepgram_final_timeout_ms: int = Field(default=800, ge=50)
    """How long a pause waits for Deepgram's final words before Whisper transcribes the turn."""
    deepgram_words_timeout_ms: int = Field(default=600, ge=50)
    """How long speech over the agent waits for interim words before asking for a final."""
    deepgram_resend_s: float = Field(default=30.0, gt=0.0)
    """Audio kept since the last final result, resent after a reconnect (at most a long turn)."""
    flux_model: str = "flux-general-en"
    flux_eot_threshold: float = Field(default=0.7, ge=0.5, le=0.9)
    flux_eot_timeout_ms: int = Field(default=5000, ge=500)
    stt_model: STTModel = "moonshine-base"
    """Which embedded STT transcribes callers (`slot eval stt --model` compares them): Moonshine
    base, biased by the script's hotwords (dev WER 25.5 % against Whisper tiny.en's 29.7 % biased,
    and less CPU a turn, for ~300 MB more memory), or Whisper tiny.en, biased by the question and
    the hotwords."""
    inference_threads: int = Field(default=2, ge=1)

    vad_threshold: float = 0.4
    """Speech probability that opens a caller segment. Chosen on the dev lines
    (`python -m evals.vad_lines`): at 0.5 piper_slow's "Own." after silence peaks at 0.504 (one
    frame from being missed); at 0.4 it has six frames to spare, while line noise alone peaks
    at 0.06 even at four times its level."""
    endpointing: Literal["smart_turn", "silence"] = "smart_turn"
    """How the edge decides a caller has finished: Smart Turn at each pause, or fixed silence."""
    endpoint_silence_ms: int = 600
    """The `silence` policy's wait."""
    smart_turn_threshold: float = Field(default=0.95, gt=0.0, le=1.0)
    """P(complete) from Smart Turn that ends the turn at once. The clips (`slot eval turns`) would
    choose 0.7; on the dev calls 0.75 and 0.85 took 20-40 ms off p50 and p90 and changed nothing
    else beyond one run's spread, so the stricter 0.95 stays (README, tenth round)."""
    smart_turn_min_pause_ms: int = Field(default=200, ge=20)
    """Silence before Smart Turn is asked, once per pause."""
    max_endpoint_silence_ms: int = Field(default=1000, ge=100)
    """Silence that ends a turn whatever Smart Turn said. 1 s, not 1.5 s, since a pause whose
    words trail off is held longer (`unfinished_max_silence_ms`): on the dev calls response
    latency p90 1754 -> 1326 ms, premature cut-offs 2.4 -> 4.4 % (`slot eval calls --set dev`)."""
    unfinished_max_silence_ms: int | None = Field(default=2500, ge=100)
    """With script endpointing: silence that ends a turn whose words so far stop where a
    sentence cannot ("um...", "it's around...", "Well,"), whatever Smart Turn said; the caller
    is looking for a word, not done. None: such a pause ends as any other."""
    speculative_stt_after_ms: int = Field(default=200, ge=20)
    """Silence after which the turn so far is transcribed, ahead of the endpoint (Whisper takes
    ~60-150 ms on a short turn here: its judgement is ready by `script_endpoint_min_pause_ms`)."""
    script_endpointing: bool = True
    """End a turn at a pause whose speculative transcript is a complete answer to the script's
    question (`workflows.expectations.judge_answer`), without waiting for Smart Turn or silence."""
    script_endpoint_min_pause_ms: int = Field(default=450, ge=0)
    """Silence a complete answer must be followed by before it ends the turn: longer than the
    pause at a comma ("Yes, [220-320 ms] I own my home" in the simulator's Piper voice), so a
    complete first clause does not cut off the rest of the sentence. 450 ms was chosen on the dev
    clips by `slot eval turns`."""
    script_short_answer_min_pause_ms: int = Field(default=700, ge=0)
    """The same wait for a complete answer of one or two words ("Yes.", "Okay."): dev callers
    cut off there went on ("Okay. [~500 ms] Yeah, I own my place"), and the rest, heard over
    the agent's next question, was misread as a new answer."""
    script_short_answer_holds_model: bool = True
    """A one- or two-word transcript waits `script_short_answer_min_pause_ms` whatever Smart
    Turn says too: most premature cut-offs on the dev calls were Smart Turn ending "Yes." or
    "Yeah." at the first pause of "Yes, this is Keiko." and the like."""
    script_question_ends_turn: bool = True
    """A pause whose transcript is a question of the caller's ("How long would they be here
    for?") ends the turn like a complete answer does: the caller waits for a reply. Smart Turn
    judged a sixth of the dev calls' turns that waited the maximum silence unfinished, and
    most of those were such questions."""
    stt_script_context: bool = True
    """Bias speech-to-text to the script: the agent's question as Whisper's initial prompt, the
    answer's likely words (slot values) as hotwords. Off for `slot eval stt`'s baseline."""
    stt_second_look: bool = True
    """With the script context: when Moonshine's likeliest reading of a pause is not understood
    (and does not trail off), take a nearly as likely reading that answers the question in the
    state's own terms (`media_edge.moonshine_stt`). On the dev replies, 16 misheard answers
    understood as said, 2 read as something else ("a hundred fifteen" as 15)."""
    stt_second_opinion: bool = True
    """With the second look, Moonshine base only: a reading of an answer to a day or time
    question that is not understood is put to Whisper tiny.en too, whose reading is taken when it
    gives the day or time (`media_edge.stt_models.SecondOpinionSTT`; the agent reads it back
    before booking). On the dev replies: 7 of the 13 weekday answers left not understood, all
    right. Costs Whisper's ~100 MB and 0.7 s of CPU at edge start."""
    barge_in_min_speech_ms: int = Field(default=500, ge=20)
    """Caller speech over the agent shorter than this never interrupts ("uh-huh", a cough)."""
    barge_in_confirm_words: bool = True
    """Past the minimum, interrupt only once the first STT words are more than a backchannel."""
    barge_in_unclear_is_backchannel: bool = True
    """With `barge_in_confirm_words`: first words that do not take the floor are a backchannel
    too: a short reading (three words or fewer besides acknowledgements) with no question, no
    word that stops or asks ("wait", "sorry", "what") and no answer the script understands.
    Hums misheard ("Mm-hmm" read as "A memo.") stopped the agent mid-line."""
    barge_in_max_backchannel_ms: int = Field(default=1200, ge=20)
    """Caller speech over the agent this long interrupts whatever its words."""
    barge_in_pause_after_ms: int | None = Field(default=120, ge=20)
    """Voiced caller speech over the agent after which its audio is paused (`clear`, the rest
    kept) until the speech proves a backchannel (resume) or an interruption (cut off). Longer
    than a click, shorter than any word; None: the agent talks on until a barge-in."""
    backchannel_resume_after_ms: int = Field(default=300, ge=20)
    """Silence after a backchannel over the paused agent before it resumes."""
    turn_continuation: bool = True
    """Caller speech that starts before the agent's reply, or just after it starts
    (`continuation_after_reply_ms`), continues the turn the edge ended: the reply is withdrawn
    and both turns' words are decided as one, in the state before (`media_edge.continuation`)."""
    continuation_after_reply_ms: int = Field(default=800, ge=0)
    presynthesize_lines: bool = True
    """Synthesize every fixed playbook line at edge start-up, so no caller waits for them."""
    line_store_dir: Path | None = None
    """Where edges keep fixed lines as phone audio across restarts (default `DATA_DIR/lines`)."""
    model_cache_dir: Path | None = None
    """Where speech models keep what they derive from their files at load, so a restart skips
    it (default `DATA_DIR/models`)."""
    max_turn_s: float = 30.0
    log_transcripts: bool = False
    """Caller transcripts are personal data: logged only when this is switched on."""

    media_max_message_bytes: int = Field(default=16 * 1024, ge=2048)
    """Largest WebSocket message the edge reads: 40 times a Twilio media message (~400 bytes)
    and 8 times its `start`; larger ones close the socket with 1009 unread."""
    edge_shutdown_grace_s: int = Field(default=10, ge=1)
    """At shutdown, how long the edge's listeners wait for their requests and streams to finish
    before cancelling them: a handler stuck on one call must not keep the process alive (the
    call's workflow learns from its missed heartbeats that the edge is gone)."""
    media_start_timeout_s: float = Field(default=5.0, gt=0.0)
    """A media socket must send `start` this soon (Twilio sends it at once) or it is closed."""
    media_max_streams: int = Field(default=400, ge=1)
    """Open media sockets on this edge, calls and not-yet-started sockets alike."""
    media_max_streams_per_source: int = Field(default=200, ge=1)
    """Open media sockets from one remote address (behind a proxy, the address uvicorn trusts
    from X-Forwarded-For). Twilio carries many calls from one media server, so it is high."""

    reprompt_after_s: float = 8.0
    max_reprompts: int = 2
    follow_up_delay_s: float = 24 * 3600.0
    answer_timeout_s: float = 60.0
    edge_heartbeat_s: float = Field(default=3.0, gt=0)
    edge_reattach_s: float = Field(default=5.0, gt=0)

    payload_keys: SecretStr | None = None
    """AES-256 keys for Temporal payloads, `id:base64key,...`; the first encrypts."""
    codec_host: str = "127.0.0.1"
    codec_port: int = 8234
    codec_token: SecretStr | None = None
    """What the codec server asks of whoever decodes (a Bearer header, or the path the UI uses)."""
    codec_ui_origins: str = ""
    """Comma-separated Web UI origins the codec server answers (CORS); default the dev UI's."""

    redis_url: str | None = None
    """`SLOT_REDIS_URL` (redis://host:port/db): the shared dialling pace and live call events go
    through Redis, shared by every worker and edge; unset, both stay in each process."""
    redis_prefix: str = "slot"
    """Prefix of Slot's keys in Redis, so several stacks can share one server."""

    database_url: str = ""
    """SQLAlchemy URL for call records; defaults to `sqlite:///{data_dir}/slot.db`."""

    api_host: str = "127.0.0.1"
    api_port: int = 8300
    api_token: SecretStr | None = None
    """`SLOT_API_TOKEN`: the bearer credential every API request must carry."""
    api_max_upload_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    """Largest leads CSV the API reads (about 100,000 leads)."""

    @model_validator(mode="after")
    def _default_database_url(self) -> Settings:
        if not self.database_url:
            self.database_url = f"sqlite:///{self.data_dir}/slot.db"
        return self

    @property
    def edge_url(self) -> str:
        return self.edge_public_url or f"http://{self.edge_host}:{self.edge_port}"

    @property
    def edge_queue(self) -> str:
        """The task queue of this edge's own worker (see `workflows.edge_hold`)."""
        return f"edge-{self.edge_id or f'{socket.gethostname()}-{self.edge_port}'}"

    @property
    def edge_internal_url(self) -> str:
        return self.edge_internal_base_url or (
            f"http://{self.edge_internal_host}:{self.edge_internal_port}"
        )

    @property
    def recordings_dir(self) -> Path:
        """Where call recordings are kept as `{call_sid}.wav` (the simulator writes them)."""
        return self.data_dir / "recordings"

    @property
    def line_store_path(self) -> Path:
        return self.line_store_dir or self.data_dir / "lines"

    @property
    def model_cache_path(self) -> Path:
        return self.model_cache_dir or self.data_dir / "models"

    @property
    def twilio_base(self) -> str:
        return self.twilio_api_base or f"http://{self.simulator_host}:{self.simulator_port}"

    @property
    def temporal_ui_url(self) -> str:
        host = self.temporal_address.rsplit(":", 1)[0]
        return f"http://{host}:{self.temporal_ui_port}"

    def workflow_url(self, workflow_id: str) -> str:
        return (
            f"{self.temporal_ui_url}/namespaces/{self.temporal_namespace}/workflows/{workflow_id}"
        )

    def call_timers(self) -> CallTimers:
        return CallTimers(
            reprompt_after_s=self.reprompt_after_s,
            max_reprompts=self.max_reprompts,
            follow_up_delay_s=self.follow_up_delay_s,
            answer_timeout_s=self.answer_timeout_s,
            edge_heartbeat_s=self.edge_heartbeat_s,
            edge_reattach_s=self.edge_reattach_s,
        )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
