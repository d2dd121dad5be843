"""Password hashing with Argon2id (OWASP password storage guidance).

The encoded hash carries its salt and parameters, so costs can be raised later and old hashes
still verify (and are flagged for rehash on the next successful login).
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import TYPE_CHECKING, Final

from blog.config import get_settings

if TYPE_CHECKING:
    from argon2 import PasswordHasher


@lru_cache(maxsize=1)
def _hasher() -> PasswordHasher:
    # argon2 is imported on first use: most functions never hash nor check a password.
    from argon2 import PasswordHasher, Type

    settings = get_settings()
    return PasswordHasher(
        time_cost=settings.argon2_time_cost,
        memory_cost=settings.argon2_memory_kib,
        parallelism=settings.argon2_parallelism,
        type=Type.ID,
    )


def hash_password(password: str) -> str:
    """A salted Argon2id hash of ``password`` in the PHC string format."""
    return _hasher().hash(password)


def verify_password(hashed: str, password: str) -> bool:
    """Whether ``password`` matches ``hashed``, compared in constant time; False for a bad hash."""
    from argon2.exceptions import InvalidHashError, VerificationError

    hasher = _hasher()
    try:
        return hasher.verify(hashed, password)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(hashed: str) -> bool:
    """Whether ``hashed`` was made with other parameters than the current ones."""
    return _hasher().check_needs_rehash(hashed)


def secret_digest(secret: str, salt: bytes) -> bytes:
    """A slow, salted digest of ``secret`` (Argon2id, the password cost), never reversible by
    brute force more cheaply than the password's own hash: for fingerprints of requests that
    carry a password (``salt``: at least 8 bytes, specific to the request)."""
    from argon2.low_level import Type, hash_secret_raw

    settings = get_settings()
    return hash_secret_raw(
        secret.encode("utf-8", "surrogatepass"),
        salt,
        time_cost=settings.argon2_time_cost,
        memory_cost=settings.argon2_memory_kib,
        parallelism=settings.argon2_parallelism,
        hash_len=32,
        type=Type.ID,
    )


# The PHC string of an Argon2id hash as argon2-cffi writes it: version, costs, salt, digest.
_OUR_HASH = re.compile(
    r"\$argon2id\$v=19\$m=[1-9][0-9]{0,7},t=[1-9][0-9]{0,3},p=[1-9][0-9]{0,2}"
    r"\$[A-Za-z0-9+/]{11,86}\$[A-Za-z0-9+/]{16,86}"
)


def is_password_hash(value: str) -> bool:
    """Whether ``value`` is one of our own Argon2id hashes (for imports of hashed users)."""
    return _OUR_HASH.fullmatch(value) is not None


# Hashes one a line: no hash holds a line feed, so the lines are the values.
_OUR_HASHES = re.compile(rf"(?:{_OUR_HASH.pattern}\n)*{_OUR_HASH.pattern}")


def are_password_hashes(values: list[str]) -> bool:
    """Whether every one of ``values`` is :func:`is_password_hash` (one regex pass, for columns)."""
    return not values or _OUR_HASHES.fullmatch("\n".join(values)) is not None


#: A hash, at the default costs, of a random password that was never kept: so the first unknown
#: login of a process costs one Argon2 verification, like a known one, not a hash and then one.
_DEFAULT_COST_DUMMY: Final = (
    "$argon2id$v=19$m=19456,t=2,p=1$dHOsso94lmvP5cj3DZk+Ww"
    "$QnhifnfH7WxB/rt2NiPimSt0qWm16bjqGMjgUEcI5B0"
)


# A valid hash of a random password: verifying against it costs as much as a real check, so an
# unknown user and a wrong password take similar time.
@lru_cache(maxsize=1)
def dummy_hash() -> str:
    """A hash that no password the client can send will match, for timing-safe failures: at the
    configured costs (the built-in one at the default costs, else one made on first use)."""
    if not needs_rehash(_DEFAULT_COST_DUMMY):
        return _DEFAULT_COST_DUMMY
    import secrets

    return hash_password(secrets.token_urlsafe(32))
