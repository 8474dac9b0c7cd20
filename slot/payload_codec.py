"""Personal data encrypted at rest in Temporal: an AES-256-GCM payload codec with key rotation.

Every payload Slot's clients write (workflow inputs, Update arguments and results, signals,
activity arguments and results, memo, the Web UI's summary and details, failure messages) is
encrypted before it leaves the process, so Temporal's database and its Web UI hold no
transcript, name or phone number in clear. Keys come from `SLOT_PAYLOAD_KEYS`
(`id:base64key,id2:base64key`): the first encrypts, every one decrypts, and each payload names
its key id, so a new key put first leaves old payloads readable. Payloads this codec did not
encrypt (the replay corpus, search attributes) pass through unchanged. The same keys seal the
personal fields of the call records.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import os
import re
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from google.protobuf.message import Message
from temporalio.api.common.v1 import Payload
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import (
    DataConverter,
    DefaultFailureConverterWithEncodedAttributes,
    PayloadCodec,
)

from slot.settings import Settings

PAYLOAD_KEYS_ENV = "SLOT_PAYLOAD_KEYS"
ENCODING = b"binary/encrypted"
KEY_ID_METADATA = "encryption-key-id"
SEALED_TEXT_PREFIX = "sealed:v1:"
KEY_BYTES = 32
NONCE_BYTES = 12
_KEY_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class PayloadKeyError(ValueError):
    """Keys missing or malformed, or data under a key this process does not hold."""


class Keyring:
    """The AES-256-GCM keys by id; the first one encrypts. Never shows its key material."""

    def __init__(self, keys: Sequence[tuple[str, bytes]]) -> None:
        if not keys:
            raise PayloadKeyError(f"{PAYLOAD_KEYS_ENV} holds no key")
        self._ciphers: dict[str, AESGCM] = {}
        for key_id, key in keys:
            if not _KEY_ID.match(key_id):
                raise PayloadKeyError(
                    f"{PAYLOAD_KEYS_ENV}: key id {key_id!r} must be 1-64 of A-Z a-z 0-9 _ . -"
                )
            if key_id in self._ciphers:
                raise PayloadKeyError(f"{PAYLOAD_KEYS_ENV}: key id {key_id!r} appears twice")
            if len(key) != KEY_BYTES:
                raise PayloadKeyError(
                    f"{PAYLOAD_KEYS_ENV}: key {key_id!r} is {len(key)} bytes; AES-256 needs "
                    f"{KEY_BYTES} (base64 of {KEY_BYTES} random bytes)"
                )
            self._ciphers[key_id] = AESGCM(key)
        self.current_id = keys[0][0]

    @classmethod
    def parse(cls, text: str) -> Keyring:
        """`id1:base64key,id2:base64key` (whitespace around entries ignored)."""
        keys = []
        for entry in (part.strip() for part in text.split(",")):
            if not entry:
                continue
            key_id, colon, encoded = entry.partition(":")
            if not colon:
                raise PayloadKeyError(f"{PAYLOAD_KEYS_ENV}: an entry is not `id:base64key`")
            try:
                key = base64.b64decode(encoded.strip(), validate=True)
            except binascii.Error:
                raise PayloadKeyError(
                    f"{PAYLOAD_KEYS_ENV}: key {key_id.strip()!r} is not base64"
                ) from None
            keys.append((key_id.strip(), key))
        return cls(keys)

    @staticmethod
    def new_entry(key_id: str) -> str:
        """A fresh `id:base64key` entry for `SLOT_PAYLOAD_KEYS`."""
        Keyring([(key_id, bytes(KEY_BYTES))])
        return f"{key_id}:{base64.b64encode(os.urandom(KEY_BYTES)).decode()}"

    @property
    def key_ids(self) -> list[str]:
        return list(self._ciphers)

    def seal(self, plaintext: bytes) -> tuple[str, bytes]:
        """(key id, nonce + ciphertext + tag) under the current key; the key id is bound in."""
        key_id = self.current_id
        nonce = os.urandom(NONCE_BYTES)
        return key_id, nonce + self._ciphers[key_id].encrypt(nonce, plaintext, key_id.encode())

    def open(self, key_id: str, sealed: bytes) -> bytes:
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise PayloadKeyError(
                f"data encrypted under key id {key_id!r}, which {PAYLOAD_KEYS_ENV} does not "
                f"hold (it holds {', '.join(self._ciphers)})"
            )
        try:
            return cipher.decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], key_id.encode())
        except InvalidTag:
            raise PayloadKeyError(
                f"data under key id {key_id!r} does not decrypt: another key has that id in "
                f"{PAYLOAD_KEYS_ENV}, or the data was altered"
            ) from None

    def seal_text(self, text: str) -> str:
        """Text as `sealed:v1:<key id>:<base64>`, for a database column."""
        key_id, sealed = self.seal(text.encode())
        return f"{SEALED_TEXT_PREFIX}{key_id}:{base64.b64encode(sealed).decode()}"

    def open_text(self, text: str) -> str:
        """The text `seal_text` sealed; text written before sealing comes back as it is."""
        if not text.startswith(SEALED_TEXT_PREFIX):
            return text
        key_id, _, encoded = text.removeprefix(SEALED_TEXT_PREFIX).partition(":")
        return self.open(key_id, base64.b64decode(encoded)).decode()

    def __repr__(self) -> str:
        return f"Keyring(current={self.current_id!r}, ids={self.key_ids!r})"


def keyring_of(settings: Settings) -> Keyring | None:
    """The settings' keys, None when `SLOT_PAYLOAD_KEYS` is unset."""
    if settings.payload_keys is None:
        return None
    return Keyring.parse(settings.payload_keys.get_secret_value())


def require_keyring(settings: Settings) -> Keyring:
    """The settings' keys; a process that would write payloads refuses to run without them."""
    keyring = keyring_of(settings)
    if keyring is None:
        raise PayloadKeyError(
            f"{PAYLOAD_KEYS_ENV} is not set: Slot encrypts call data in Temporal with it "
            "(`id:base64key`; `slot payload-key` makes one; `slot dev` makes its own)"
        )
    return keyring


class PayloadDecryptor:
    """Decrypts what `EncryptionCodec` wrote; anything else passes through unchanged."""

    def __init__(self, keyring: Keyring | None) -> None:
        self.keyring = keyring

    def decode_payload(self, payload: Payload) -> Payload:
        if payload.metadata.get("encoding") != ENCODING:
            return payload
        key_id = payload.metadata.get(KEY_ID_METADATA, b"").decode()
        if self.keyring is None:
            raise PayloadKeyError(
                f"payload encrypted under key id {key_id!r} and {PAYLOAD_KEYS_ENV} is not set"
            )
        return Payload.FromString(self.keyring.open(key_id, payload.data))

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.decode_payload(p) for p in payloads]

    def decode_history(self, history: WorkflowHistory) -> WorkflowHistory:
        """A copy of `history` with every payload in clear, for code that reads it raw."""
        events = []
        for event in history.events:
            clear = HistoryEvent()
            clear.CopyFrom(event)
            self._decode_message(clear)
            events.append(clear)
        return WorkflowHistory(history.workflow_id, events)

    def _decode_message(self, message: Message) -> None:
        for field, value in message.ListFields():
            kind = field.message_type
            if kind is None:
                continue
            if kind.GetOptions().map_entry:
                value_kind = kind.fields_by_name["value"].message_type
                if value_kind is not None:
                    for item in value.values():
                        self._decode_in_place(item)
            elif field.is_repeated:
                for item in value:
                    self._decode_in_place(item)
            else:
                self._decode_in_place(value)

    def _decode_in_place(self, message: Message) -> None:
        if isinstance(message, Payload):
            clear = self.decode_payload(message)
            if clear is not message:
                message.CopyFrom(clear)
        else:
            self._decode_message(message)


class EncryptionCodec(PayloadDecryptor, PayloadCodec):
    """Slot's payload codec: each payload serialized whole and sealed under the current key."""

    def __init__(self, keyring: Keyring) -> None:
        super().__init__(keyring)
        self.sealing = keyring

    def encode_payload(self, payload: Payload) -> Payload:
        key_id, sealed = self.sealing.seal(payload.SerializeToString())
        return Payload(
            metadata={"encoding": ENCODING, KEY_ID_METADATA: key_id.encode()}, data=sealed
        )

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.encode_payload(p) for p in payloads]


def encrypted_data_converter(keyring: Keyring) -> DataConverter:
    """Slot's pydantic messages, encrypted: what every client Slot creates carries. Failure
    messages and stack traces go into an encrypted payload too (they may quote a caller)."""
    return dataclasses.replace(
        pydantic_data_converter,
        payload_codec=EncryptionCodec(keyring),
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )


def decryptor_of(converter: DataConverter) -> PayloadDecryptor:
    """What reads a client's histories raw: its codec, or one that only passes clear ones."""
    codec = converter.payload_codec
    return codec if isinstance(codec, PayloadDecryptor) else PayloadDecryptor(None)
