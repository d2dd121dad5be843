"""Numbers in their one canonical spelling: path and query numbers, and the token's claims."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from blog.errors import AuthenticationError

KEY = "unit-test-signing-key-that-is-long-enough-0123"

#: Spellings of a number that Python's int() or pydantic's lax mode would take, and the API not.
NON_CANONICAL = [
    " 12", "12 ", "+12", "-12", "1_2", "012", "00", "12.0", "1e1", "0x1f", "１２", "١٢", "߁",
    "12\n", "\t12", "1 2", "", "½", "²", "12\x00", "True",
]  # fmt: skip


@pytest.mark.parametrize("spelling", NON_CANONICAL)
def test_a_path_or_query_number_in_any_other_spelling_is_refused(spelling: str) -> None:
    from blog.http import canonical_number

    with pytest.raises(ValueError, match="ASCII digits"):
        canonical_number(spelling)


@pytest.mark.parametrize("spelling", ["0", "1", "12", "2147483647", "9" * 19])
def test_canonical_numbers_pass_as_they_are(spelling: str) -> None:
    from blog.http import canonical_number

    assert canonical_number(spelling) == spelling


@pytest.fixture
def signing_key(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    from blog.config import get_settings

    monkeypatch.setenv("JWT_SIGNING_KEY", KEY)
    get_settings.cache_clear()
    yield KEY
    monkeypatch.undo()
    get_settings.cache_clear()


def _signed(**changes: Any) -> str:
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": "12",
        "iss": "blog-api",
        "aud": "blog-api",
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "ver": 0,
    }
    claims.update(changes)
    # Written by hand, so that any JSON at all can be signed (1e400 included).
    payload = json.dumps({k: v for k, v in claims.items() if v is not ...})
    signing_input = b".".join(
        _b64(part.encode()) for part in ('{"alg":"HS256","typ":"JWT"}', payload)
    )
    signature = hmac.new(KEY.encode(), signing_input, hashlib.sha256).digest()
    return (signing_input + b"." + _b64(signature)).decode()


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def test_a_well_formed_token_verifies(signing_key: str) -> None:
    from blog.auth import verify_token

    claims = verify_token(_signed(ver=3))
    assert (claims.user_id, claims.token_version) == (12, 3)


FORGED_CLAIMS = [
    *({"sub": s} for s in NON_CANONICAL),
    {"sub": 12},
    {"sub": "0"},
    {"sub": "2147483648"},
    {"sub": "9" * 5000},
    {"sub": ["12"]},
    {"exp": float(int(time.time()) + 600)},
    {"exp": str(int(time.time()) + 600)},
    {"exp": True},
    {"exp": float("inf")},
    {"exp": [1]},
    {"exp": {"a": 1}},
    {"iat": "1"},
    {"iat": 1.5},
    {"nbf": "0"},
    {"ver": ...},
    {"ver": "0"},
    {"ver": 0.0},
    {"ver": False},
    {"ver": -1},
    {"ver": 2**31},
]


@pytest.mark.parametrize("changes", FORGED_CLAIMS, ids=repr)
def test_a_correctly_signed_token_with_a_non_canonical_claim_is_refused(
    signing_key: str, changes: dict[str, Any]
) -> None:
    from blog.auth import verify_token

    with pytest.raises(AuthenticationError):
        verify_token(_signed(**changes))
