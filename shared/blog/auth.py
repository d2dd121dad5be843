"""Access tokens: short-lived HS256 JWTs signed with a key kept in Secrets Manager."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any, Final

from blog.config import get_settings, trace_aws_sdk
from blog.errors import AuthenticationError

ALGORITHM: Final = "HS256"
MIN_KEY_BYTES: Final = 32


@dataclass(frozen=True, slots=True)
class Claims:
    """What a verified token says about its bearer."""

    user_id: int
    expires_at: int


def signing_key(*, refresh: bool = False) -> bytes:
    """The HMAC key: ``JWT_SIGNING_KEY`` locally, else the ``JWT_SECRET_ARN`` secret (cached)."""
    settings = get_settings()
    if settings.jwt_signing_key:
        key = settings.jwt_signing_key
    elif settings.jwt_secret_arn:
        from aws_lambda_powertools.utilities import parameters

        trace_aws_sdk()
        key = str(
            parameters.get_secret(
                settings.jwt_secret_arn, force_fetch=refresh, max_age=settings.db_secret_max_age
            )
        )
    else:
        raise RuntimeError("No token signing key: set JWT_SECRET_ARN (AWS) or JWT_SIGNING_KEY")
    raw = key.encode("utf-8")
    if len(raw) < MIN_KEY_BYTES:
        raise RuntimeError(f"The token signing key must be at least {MIN_KEY_BYTES} bytes")
    return raw


def issue_token(user_id: int) -> tuple[str, int]:
    """A signed access token for ``user_id`` and its lifetime in seconds."""
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
    }
    return jwt.encode(claims, signing_key(), algorithm=ALGORITHM), settings.access_token_ttl


def verify_token(token: str) -> Claims:
    """The claims of a valid token; ``AuthenticationError`` for anything else.

    Only HS256 is accepted, so ``alg: none`` and RS/HS confusion are refused before any check.
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
            options={"require": ["exp", "iat", "sub", "iss", "aud"]},
            leeway=5,
        )
        user_id = int(claims["sub"])
    except (jwt.PyJWTError, ValueError, TypeError) as error:
        raise AuthenticationError("Invalid or expired token") from error
    if not 0 < user_id < 2**31:
        raise AuthenticationError("Invalid or expired token")
    return Claims(user_id=user_id, expires_at=int(claims["exp"]))


def bearer_token(headers: dict[str, str] | None) -> str | None:
    """The token of an ``Authorization: Bearer …`` header, if there is one."""
    for name, value in (headers or {}).items():
        if name.lower() == "authorization":
            scheme, _, token = (value or "").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
    return None
