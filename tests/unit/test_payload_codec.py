"""The payload codec: AES-256-GCM per payload, key id in the metadata, rotation, pass-through of
clear payloads, clear errors naming SLOT_PAYLOAD_KEYS; and the dev stack's own keys."""

from __future__ import annotations

import base64
import stat
from pathlib import Path

import pytest
from pydantic import SecretStr
from temporalio.api.common.v1 import Payload
from temporalio.api.failure.v1 import Failure
from temporalio.exceptions import ApplicationError

from slot.dev_secrets import CODEC_TOKEN_FILE, PAYLOAD_KEYS_FILE, use_dev_secrets
from slot.payload_codec import (
    ENCODING,
    KEY_ID_METADATA,
    EncryptionCodec,
    Keyring,
    PayloadDecryptor,
    PayloadKeyError,
    encrypted_data_converter,
    require_keyring,
)
from slot.replay import CORPUS_DIR, load_history
from slot.settings import Settings
from workflows.messages import Lead

TRANSCRIPT = "My number is 555 867 5309, I'm Jordan Quinlan at 12 Elm Street"


def keyring(*ids: str) -> Keyring:
    return Keyring.parse(",".join(Keyring.new_entry(key_id) for key_id in ids))


def clear_payload(text: str = TRANSCRIPT) -> Payload:
    return Payload(metadata={"encoding": b"json/plain"}, data=f'"{text}"'.encode())


async def test_a_payload_is_encrypted_under_the_current_key_and_decodes_back() -> None:
    codec = EncryptionCodec(keyring("k2", "k1"))
    (sealed,) = await codec.encode([clear_payload()])
    assert sealed.metadata["encoding"] == ENCODING
    assert sealed.metadata[KEY_ID_METADATA] == b"k2"
    assert b"json/plain" not in sealed.SerializeToString()
    assert b"5309" not in sealed.data and b"Jordan" not in sealed.data
    (again,) = await codec.encode([clear_payload()])
    assert again.data != sealed.data, "a fresh nonce per payload"
    assert await codec.decode([sealed]) == [clear_payload()]


async def test_the_data_converter_encrypts_slot_messages() -> None:
    converter = encrypted_data_converter(keyring("k1"))
    (payload,) = await converter.encode([Lead(name="Jordan Quinlan", phone="+15558675309")])
    assert b"Jordan" not in payload.SerializeToString()
    assert b"8675309" not in payload.SerializeToString()
    assert await converter.decode([payload], [Lead]) == [
        Lead(name="Jordan Quinlan", phone="+15558675309")
    ]


async def test_failure_messages_are_encrypted_too() -> None:
    converter = encrypted_data_converter(keyring("k1"))
    failure = Failure()
    await converter.encode_failure(ApplicationError(f"could not reach {TRANSCRIPT}"), failure)
    assert b"5309" not in failure.SerializeToString()
    assert "5309" in str(await converter.decode_failure(failure))


async def test_after_rotation_old_payloads_still_decode_and_new_ones_use_the_new_key() -> None:
    old_entry = Keyring.new_entry("2024-01")
    (written_before,) = await EncryptionCodec(Keyring.parse(old_entry)).encode([clear_payload()])
    rotated = EncryptionCodec(Keyring.parse(f"{Keyring.new_entry('2025-06')},{old_entry}"))
    assert await rotated.decode([written_before]) == [clear_payload()]
    (written_after,) = await rotated.encode([clear_payload()])
    assert written_after.metadata[KEY_ID_METADATA] == b"2025-06"

    retired = EncryptionCodec(keyring("2025-06"))
    with pytest.raises(PayloadKeyError, match="'2024-01', which SLOT_PAYLOAD_KEYS does not hold"):
        await retired.decode([written_before])


async def test_clear_payloads_pass_through_without_any_key() -> None:
    payloads = [clear_payload(), Payload(metadata={"encoding": b"binary/null"})]
    assert await PayloadDecryptor(None).decode(payloads) == payloads
    assert await EncryptionCodec(keyring("k1")).decode(payloads) == payloads


async def test_an_encrypted_payload_without_keys_or_altered_is_refused_clearly() -> None:
    codec = EncryptionCodec(keyring("k1"))
    (sealed,) = await codec.encode([clear_payload()])
    with pytest.raises(PayloadKeyError, match="key id 'k1' and SLOT_PAYLOAD_KEYS is not set"):
        await PayloadDecryptor(None).decode([sealed])
    with pytest.raises(PayloadKeyError, match="another key has that id"):
        await EncryptionCodec(keyring("k1")).decode([sealed])
    altered = Payload()
    altered.CopyFrom(sealed)
    altered.data = sealed.data[:-1] + bytes([sealed.data[-1] ^ 1])
    with pytest.raises(PayloadKeyError, match="altered"):
        await codec.decode([altered])


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("", "holds no key"),
        ("k1", "not `id:base64key`"),
        ("k1:not base64!", "'k1' is not base64"),
        (f"k1:{base64.b64encode(bytes(16)).decode()}", "'k1' is 16 bytes; AES-256 needs 32"),
        (f"k 1:{base64.b64encode(bytes(32)).decode()}", "key id 'k 1' must be"),
        (
            f"k1:{base64.b64encode(bytes(32)).decode()},k1:{base64.b64encode(bytes(32)).decode()}",
            "'k1' appears twice",
        ),
    ],
)
def test_malformed_keys_are_refused_naming_the_variable(text: str, complaint: str) -> None:
    with pytest.raises(PayloadKeyError) as error:
        Keyring.parse(text)
    assert "SLOT_PAYLOAD_KEYS" in str(error.value)
    assert complaint in str(error.value)


def test_keys_never_show_in_a_repr_or_in_settings() -> None:
    entry = Keyring.new_entry("k1")
    secret = entry.split(":", 1)[1]
    assert secret not in repr(Keyring.parse(entry))
    settings = Settings(payload_keys=SecretStr(entry))
    assert secret not in repr(settings) and secret not in str(settings.model_dump())


def test_without_keys_a_process_is_told_which_variable_to_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SLOT_PAYLOAD_KEYS", raising=False)
    with pytest.raises(PayloadKeyError, match=r"^SLOT_PAYLOAD_KEYS is not set"):
        require_keyring(Settings(data_dir=tmp_path))


async def test_a_history_decodes_whole_and_the_clear_corpus_is_left_as_it_is() -> None:
    history = load_history(CORPUS_DIR / "booked.json")
    assert PayloadDecryptor(None).decode_history(history).events == history.events

    codec = EncryptionCodec(keyring("k1"))
    sealed = load_history(CORPUS_DIR / "booked.json")
    count = 0
    for event in sealed.events:
        for payloads in (
            event.workflow_execution_started_event_attributes.input,
            event.workflow_execution_completed_event_attributes.result,
        ):
            for payload in payloads.payloads:
                payload.CopyFrom(codec.encode_payload(payload))
                count += 1
    assert count == 2
    assert sealed.events != history.events
    assert codec.decode_history(sealed).events == history.events


def test_sealed_text_opens_and_text_written_before_sealing_reads_as_it_is() -> None:
    ring = keyring("k1")
    sealed = ring.seal_text(TRANSCRIPT)
    assert sealed.startswith("sealed:v1:k1:") and "Jordan" not in sealed
    assert ring.open_text(sealed) == TRANSCRIPT
    assert ring.open_text('["clear", "json"]') == '["clear", "json"]'


def test_the_dev_stack_makes_its_keys_once_per_data_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SLOT_PAYLOAD_KEYS", raising=False)
    monkeypatch.delenv("SLOT_CODEC_TOKEN", raising=False)
    assert use_dev_secrets(Settings(data_dir=tmp_path), create=False).payload_keys is None
    first = use_dev_secrets(Settings(data_dir=tmp_path))
    again = use_dev_secrets(Settings(data_dir=tmp_path))
    assert first.payload_keys is not None and again.payload_keys is not None
    assert first.payload_keys.get_secret_value() == again.payload_keys.get_secret_value()
    assert first.codec_token == again.codec_token
    for name in (PAYLOAD_KEYS_FILE, CODEC_TOKEN_FILE):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600
    require_keyring(first)

    other = use_dev_secrets(Settings(data_dir=tmp_path / "other"))
    assert other.payload_keys != first.payload_keys
    assert require_keyring(other).current_id != require_keyring(first).current_id

    chosen = Keyring.new_entry("prod")
    from_env = use_dev_secrets(Settings(data_dir=tmp_path, payload_keys=SecretStr(chosen)))
    assert from_env.payload_keys == SecretStr(chosen)
