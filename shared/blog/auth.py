"""Access tokens: short-lived HS256 JWTs signed with a key kept in Secrets Manager."""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass
from typing import Any, Final

from blog.config import get_settings
from blog.errors import AuthenticationError

ALGORITHM: Final = "HS256"
MIN_KEY_BYTES: Final = 32
#: Seconds of clock difference tolerated between the issuer and a verifier.
LEEWAY_S: Final = 5
_ID_MAX: Final = 2**31 - 1
# A user id as the issuer writes ``sub``: ASCII digits, no sign, space or leading zero.
_SUBJECT = re.compile(r"[1-9][0-9]{0,9}")
# Numeric claims must be JSON integers (PyJWT alone takes 1e10 and "123" for ``exp``).
_INTEGER_CLAIMS: Final = ("exp", "iat", "nbf", "ver")


@dataclass(frozen=True, slots=True)
class Claims:
    """What a verified token says about its bearer.

    ``token_version`` is the user's token version when the token was issued: a password change,
    a deactivation or "sign out everywhere" moves it on, which voids every older token.
    """

    user_id: int
    token_version: int
    expires_at: int


def signing_key(*, refresh: bool = False) -> bytes:
    """The HMAC key: ``JWT_SIGNING_KEY`` locally, else the ``JWT_SECRET_ARN`` secret (cached)."""
    settings = get_settings()
    if settings.jwt_signing_key:
        key = settings.jwt_signing_key
    elif settings.jwt_secret_arn:
        from blog.secrets_manager import read_secret

        key = read_secret(
            settings.jwt_secret_arn, max_age=settings.db_secret_max_age, refresh=refresh
        )
    else:
        raise RuntimeError("No token signing key: set JWT_SECRET_ARN (AWS) or JWT_SIGNING_KEY")
    raw = key.encode("utf-8")
    if len(raw) < MIN_KEY_BYTES:
        raise RuntimeError(f"The token signing key must be at least {MIN_KEY_BYTES} bytes")
    return raw


def issue_token(user_id: int, token_version: int) -> tuple[str, int]:
    """A signed access token for ``user_id`` at ``token_version`` and its lifetime in seconds."""
    import jwt  # on first use: most functions never issue nor verify a token

    settings = get_settings()
    now = int(time.time())
    claims = {
        "sub": str(user_id),
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "iat": now,
        "nbf": now,
        "exp": now + settings.access_token_ttl,
        "jti": secrets.token_urlsafe(16),
        "ver": token_version,
    }
    return jwt.encode(claims, signing_key(), algorithm=ALGORITHM), settings.access_token_ttl


def verify_token(token: str) -> Claims:
    """The claims of a valid token; ``AuthenticationError`` for anything else.

    Only HS256 is accepted, so ``alg: none`` and RS/HS confusion are refused before any check;
    ``sub`` must be a user id in canonical digits and the times and version JSON integers.
    The token alone is checked here: whether its user may still use it is read with their row.
    """
    import jwt

    settings = get_settings()
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            signing_key(),
            algorithms=[ALGORITHM],
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
            options={"require": ["exp", "iat", "sub", "iss", "aud", "ver"]},
            leeway=LEEWAY_S,
        )
    # PyJWT's own claim checks may raise plain errors on claims of odd types (int([]), int(inf)).
    except (jwt.PyJWTError, TypeError, ValueError, ArithmeticError) as error:
        raise AuthenticationError("Invalid or expired token") from error
    subject = claims["sub"]
    if (
        not isinstance(subject, str)
        or _SUBJECT.fullmatch(subject) is None
        or int(subject) > _ID_MAX
        or any(
            name in claims and type(claims[name]) is not int  # bool is an int, and refused too
            for name in _INTEGER_CLAIMS
        )
        or not 0 <= claims["ver"] <= _ID_MAX
    ):
        raise AuthenticationError("Invalid or expired token")
    return Claims(user_id=int(subject), token_version=claims["ver"], expires_at=claims["exp"])


def bearer_token(headers: dict[str, str] | None) -> str | None:
    """The token of an ``Authorization: Bearer …`` header, if there is one."""
    for name, value in (headers or {}).items():
        if name.lower() == "authorization":
            scheme, _, token = (value or "").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
    return None
