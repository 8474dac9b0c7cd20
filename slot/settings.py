"""Slot's configuration, read from the environment (prefix `SLOT_`), never from files in the repo.

Every delay the workflows wait on is configurable so tests can run days-long timers in seconds.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from workflows.messages import CallTimers

REPO_ROOT = Path(__file__).resolve().parent.parent


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

    default_script: str = "solar_survey"

    tts_provider: Literal["piper", "espeak"] = "piper"
    inference_threads: int = Field(default=2, ge=1)

    vad_threshold: float = 0.5
    endpointing: Literal["smart_turn", "silence"] = "smart_turn"
    """How the edge decides a caller has finished: Smart Turn at each pause, or fixed silence."""
    endpoint_silence_ms: int = 600
    """The `silence` policy's wait."""
    smart_turn_threshold: float = Field(default=0.95, gt=0.0, le=1.0)
    """P(complete) from Smart Turn that ends the turn at once (chosen by `slot eval turns`)."""
    smart_turn_min_pause_ms: int = Field(default=200, ge=20)
    """Silence before Smart Turn is asked, once per pause."""
    max_endpoint_silence_ms: int = Field(default=1500, ge=100)
    """Silence that ends a turn whatever Smart Turn said."""
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
    stt_script_context: bool = True
    """Bias speech-to-text to the script: the agent's question as Whisper's initial prompt, the
    answer's likely words (slot values) as hotwords. Off for `slot eval stt`'s baseline."""
    barge_in_min_speech_ms: int = Field(default=500, ge=20)
    """Caller speech over the agent shorter than this never interrupts ("uh-huh", a cough)."""
    barge_in_confirm_words: bool = True
    """Past the minimum, interrupt only once the first STT words are more than a backchannel."""
    barge_in_max_backchannel_ms: int = Field(default=1200, ge=20)
    """Caller speech over the agent this long interrupts whatever its words."""
    barge_in_pause_after_ms: int | None = Field(default=120, ge=20)
    """Voiced caller speech over the agent after which its audio is paused (`clear`, the rest
    kept) until the speech proves a backchannel (resume) or an interruption (cut off). Longer
    than a click, shorter than any word; None: the agent talks on until a barge-in."""
    backchannel_resume_after_ms: int = Field(default=300, ge=20)
    """Silence after a backchannel over the paused agent before it resumes."""
    presynthesize_lines: bool = True
    """Synthesize every fixed playbook line at edge start-up, so no caller waits for them."""
    max_turn_s: float = 30.0
    log_transcripts: bool = False
    """Caller transcripts are personal data: logged only when this is switched on."""

    reprompt_after_s: float = 8.0
    max_reprompts: int = 2
    follow_up_delay_s: float = 24 * 3600.0
    answer_timeout_s: float = 60.0

    database_url: str = ""
    """SQLAlchemy URL for call records; defaults to `sqlite:///{data_dir}/slot.db`."""

    @model_validator(mode="after")
    def _default_database_url(self) -> Settings:
        if not self.database_url:
            self.database_url = f"sqlite:///{self.data_dir}/slot.db"
        return self

    @property
    def edge_url(self) -> str:
        return self.edge_public_url or f"http://{self.edge_host}:{self.edge_port}"

    @property
    def edge_internal_url(self) -> str:
        return self.edge_internal_base_url or (
            f"http://{self.edge_internal_host}:{self.edge_internal_port}"
        )

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
        )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
