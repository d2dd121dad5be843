"""Settings read once from the environment and validated at start-up."""

from __future__ import annotations

import os
from enum import StrEnum
from functools import lru_cache
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator


class SSLMode(StrEnum):
    """How the database connection uses TLS (the libpq names)."""

    DISABLE = "disable"
    REQUIRE = "require"
    VERIFY_FULL = "verify-full"


class Settings(BaseModel):
    """Database and security settings.

    Each field is read from the environment variable of the same name (in any case); values
    given to the constructor take precedence. A value that does not validate fails start-up with
    the field's name (never its value).

    The database needs ``DATABASE_URL`` (local work, tests) or ``DB_SECRET_ARN`` (AWS: a Secrets
    Manager secret in the RDS format); ``DB_HOST``/``DB_PORT``/``DB_NAME`` override the secret's
    values, which lets the functions point at an RDS Proxy endpoint while the secret names the
    database instance.
    """

    model_config = ConfigDict(frozen=True, extra="ignore", hide_input_in_errors=True)

    database_url: str | None = Field(default=None, repr=False)
    db_secret_arn: str | None = None
    db_host: str | None = None
    db_port: int | None = Field(default=None, ge=1, le=65535)
    db_name: str | None = None
    db_sslmode: SSLMode = SSLMode.VERIFY_FULL
    db_ssl_ca_file: str | None = None
    db_connect_timeout: float = Field(default=5.0, gt=0, le=60)
    # Whether an on-demand cold start opens its first connection while the handler imports.
    db_connect_during_init: bool = True
    # Below the functions' 10 s timeout with the connect timeout and a margin on top, so that a
    # stuck query ends as our 503 (Retry-After), not as Lambda stopping the function mid-request.
    db_statement_timeout_ms: int = Field(default=3_000, ge=100, le=900_000)
    # How long a fetched secret is trusted before it is fetched again (rotation safety net).
    db_secret_max_age: int = Field(default=300, ge=0)
    # Secrets read through the AWS Parameters and Secrets Lambda Extension (the template sets it
    # when the extension's layer is attached), on the port it listens on (its own variable).
    secrets_extension: bool = False
    parameters_secrets_extension_http_port: int = Field(default=2773, ge=1, le=65535)

    # Retry of deadlocks and serialization failures.
    db_retry_attempts: int = Field(default=4, ge=1, le=10)
    db_retry_base_delay: float = Field(default=0.05, ge=0, le=5)

    # Argon2id cost (OWASP password storage cheat sheet: m=19 MiB, t=2, p=1 as the minimum).
    argon2_time_cost: int = Field(default=2, ge=1, le=20)
    argon2_memory_kib: int = Field(default=19_456, ge=8, le=1_048_576)
    argon2_parallelism: int = Field(default=1, ge=1, le=16)

    # Access tokens: HS256 with a key from Secrets Manager (JWT_SECRET_ARN) or, locally, the
    # environment (JWT_SIGNING_KEY).
    jwt_secret_arn: str | None = None
    jwt_signing_key: str | None = Field(default=None, min_length=32, repr=False)
    jwt_issuer: str = "blog-api"
    jwt_audience: str = "blog-api"
    access_token_ttl: int = Field(default=900, ge=60, le=86_400)
    # Sign-in slowing per account and client: after this many wrong passwords in a row sign-in
    # pauses for that pair for 1 second, then 2, 4... with each further one, up to the longest
    # pause.
    sign_in_free_attempts: int = Field(default=5, ge=1, le=100)
    sign_in_max_pause_s: int = Field(default=900, ge=1, le=86_400)
    # Account-wide, from every client: milder, and with a small cap (at most a minute) so that it
    # can never keep the owner out for long; clients without wrong passwords of their own for the
    # account are not paused by it at all.
    sign_in_account_free_attempts: int = Field(default=20, ge=1, le=10_000)
    sign_in_account_max_pause_s: int = Field(default=10, ge=1, le=60)
    # Failures are forgotten this long after the last one (or the end of its pause).
    sign_in_failure_window_s: int = Field(default=900, ge=60, le=86_400)

    # How long the answer to a POST sent with an Idempotency-Key is kept for its retries.
    idempotency_ttl_seconds: int = Field(default=86_400, ge=60, le=7 * 86_400)

    page_size_default: int = Field(default=20, ge=1, le=100)
    page_size_max: int = Field(default=100, ge=1, le=1000)

    @model_validator(mode="before")
    @classmethod
    def _from_environment(cls, data: Any) -> Any:
        """The environment's values under the given ones (variable names in any case)."""
        if not isinstance(data, dict):
            return data
        fields = cls.model_fields
        found = {name.lower(): value for name, value in os.environ.items()}
        return {**{name: found[name] for name in fields if name in found}, **data}

    def require_database(self) -> None:
        """Fail with a clear message when no database is configured (checked on first connect)."""
        if not self.database_url and not self.db_secret_arn:
            raise RuntimeError(
                "No database configured: set DATABASE_URL (local) or DB_SECRET_ARN (AWS)"
            )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read on first use so tests can set the environment first."""
    return Settings()
