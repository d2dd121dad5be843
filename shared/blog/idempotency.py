"""Safe retries of ``POST``: what identifies a request sent with an ``Idempotency-Key``, and the
answer kept for its retries (see :func:`blog.services.run_once`).

Powertools' idempotency utility is not used: it records a request as in progress, runs the
handler, then records the result, each its own write to its store. The write the handler makes
commits in between, so a timeout or crash there leaves a committed row with an in-progress
record, and the retry that finds it expired does the work again. Here the record is a row
written in the same PostgreSQL transaction as the work: both commit, or neither.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Final

from blog.security import secret_digest

#: Request fields that never enter a fingerprint in the clear (a fast hash of a body holding a
#: password would be a fast hash of the password).
SECRET_FIELDS: Final = frozenset({"password"})
#: The scope of callers with no identity (public routes): keys are the clients' random values,
#: and a replay needs the very same body, password included, so sharing one scope reveals
#: nothing that the caller did not send.
ANONYMOUS: Final = "anonymous"


@dataclass(frozen=True, slots=True)
class IdempotentRequest:
    """A request with an ``Idempotency-Key``: who sent it, the key, and what it asked."""

    scope: str
    key: str
    fingerprint: str


@dataclass(frozen=True, slots=True)
class StoredReply:
    """An answer as kept for retries: status, headers (``Location``, ``ETag``…), JSON body."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: str = ""
    replayed: bool = False


def scope_for(user_id: int | None) -> str:
    """The key space of a caller: their user id, or :data:`ANONYMOUS`."""
    return ANONYMOUS if user_id is None else f"user:{user_id}"


def fingerprint(*, scope: str, key: str, method: str, path: str, body: str | None) -> str:
    """sha256 of the method, the path and the body (its JSON, canonical: key order and spacing
    do not matter); a secret field's value enters as its Argon2id digest, salted per key."""
    canonical = ""
    if body:
        salt = hashlib.sha256(f"{scope}\0{key}".encode()).digest()[:16]
        canonical = json.dumps(
            _masked(json.loads(body), salt), sort_keys=True, separators=(",", ":")
        )
    return hashlib.sha256(f"{method}\0{path}\0{canonical}".encode()).hexdigest()


def _masked(value: Any, salt: bytes) -> Any:
    if isinstance(value, dict):
        return {
            k: secret_digest(v, salt).hex()
            if k in SECRET_FIELDS and isinstance(v, str)
            else _masked(v, salt)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_masked(item, salt) for item in value]
    return value
