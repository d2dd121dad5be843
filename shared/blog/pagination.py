"""Opaque list cursors: where a page ended, for the list it came from.

A cursor is the base64url (unpadded) of a 6-byte BLAKE2b checksum followed by a small JSON
document ``{"v": version, "s": scope, "k": [key values]}``: ``scope`` names the list and its
filters (route, author, drafts, search text), so a cursor cannot be replayed on another list, and
``k`` is the last row's sort key (``created_at`` and ``id``, or ``id``), which the next page
starts after.

The checksum is unkeyed on purpose. It catches a cursor that was cut, mistyped or edited; it is
not a secret, because a cursor only encodes a position in a list the caller may read anyway
(``created_at`` and ``id`` are in every item): a forged one could ask for nothing the ``page``
parameters and the filters could not. A keyed HMAC would buy no protection and cost every public
list function a Secrets Manager fetch on its cold path. A cursor does not expire: positions stay
meaningful (keyset on a unique key), also after rows come and go. A cursor of an older format
(``v``) is refused as stale with a 400, so the format can change.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from datetime import datetime
from typing import Any, Final

from blog.errors import InvalidCursorError

CURSOR_VERSION: Final = 1
#: A cursor holds a scope digest and two short keys: anything longer is not one of ours.
CURSOR_MAX_CHARS: Final = 200
_CHECKSUM_BYTES: Final = 6
_SCOPE_CHARS: Final = 16


def _scope_digest(scope: str) -> str:
    return hashlib.blake2b(scope.encode(), digest_size=_SCOPE_CHARS // 2).hexdigest()


def _checksum(payload: bytes) -> bytes:
    return hashlib.blake2b(payload, digest_size=_CHECKSUM_BYTES).digest()


def _encode_key(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def encode_cursor(scope: str, key: tuple[Any, ...]) -> str:
    """The cursor of the position after ``key`` in the list named ``scope``."""
    document = {"v": CURSOR_VERSION, "s": _scope_digest(scope), "k": [_encode_key(v) for v in key]}
    payload = json.dumps(document, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(_checksum(payload) + payload).rstrip(b"=").decode()


def decode_cursor(cursor: str, scope: str, kinds: tuple[type, ...]) -> tuple[Any, ...]:
    """The key a cursor of list ``scope`` holds, its values of ``kinds`` (``datetime``, ``int``).

    ``InvalidCursorError`` (400) if it is malformed, altered, of another list, or stale.
    """
    if len(cursor) > CURSOR_MAX_CHARS:
        raise InvalidCursorError("The cursor is not one this API issued", reason="malformed")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    except (binascii.Error, ValueError):
        raise InvalidCursorError(
            "The cursor is not one this API issued", reason="malformed"
        ) from None
    checksum, payload = raw[:_CHECKSUM_BYTES], raw[_CHECKSUM_BYTES:]
    if not payload or checksum != _checksum(payload):
        raise InvalidCursorError("The cursor is damaged or was altered", reason="checksum")
    try:
        document = json.loads(payload)
    except ValueError:
        raise InvalidCursorError(
            "The cursor is not one this API issued", reason="malformed"
        ) from None
    if not isinstance(document, dict):
        raise InvalidCursorError("The cursor is not one this API issued", reason="malformed")
    if document.get("v") != CURSOR_VERSION:
        raise InvalidCursorError(
            "The cursor is from an older version of this API: start again from the first page",
            reason="stale",
        )
    if document.get("s") != _scope_digest(scope):
        raise InvalidCursorError(
            "The cursor belongs to another list (another route or other filters)",
            reason="other_list",
        )
    return _decode_key(document.get("k"), kinds)


def _decode_key(values: Any, kinds: tuple[type, ...]) -> tuple[Any, ...]:
    if not isinstance(values, list) or len(values) != len(kinds):
        raise InvalidCursorError("The cursor is not one this API issued", reason="malformed")
    key: list[Any] = []
    for value, kind in zip(values, kinds, strict=True):
        if kind is datetime and isinstance(value, str):
            try:
                parsed = datetime.fromisoformat(value)
            except ValueError:
                parsed = None
            if parsed is not None and parsed.tzinfo is not None:
                key.append(parsed)
                continue
        elif kind is int and type(value) is int and 1 <= value <= 2**31 - 1:
            key.append(value)
            continue
        raise InvalidCursorError("The cursor is not one this API issued", reason="malformed")
    return tuple(key)
