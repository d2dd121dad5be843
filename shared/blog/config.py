"""Settings read once from the environment and validated at start-up."""

from __future__ import annotations

from enum import StrEnum
from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class SSLMode(StrEnum):
    """How the database connection uses TLS (the libpq names)."""

    DISABLE = "disable"
    REQUIRE = "require"
    VERIFY_FULL = "verify-full"


class Settings(BaseSettings):
    """Database and security settings.

    The database needs ``DATABASE_URL`` (local work, tests) or ``DB_SECRET_ARN`` (AWS: a Secrets
    Manager secret in the RDS format); ``DB_HOST``/``DB_PORT``/``DB_NAME`` override the secret's
    values, which lets the functions point at an RDS Proxy endpoint while the secret names the
    database instance.
    """

    model_config = SettingsConfigDict(frozen=True, extra="ignore", case_sensitive=False)

    database_url: str | None = Field(default=None, repr=False)
    db_secret_arn: str | None = None
    db_host: str | None = None
    db_port: int | None = Field(default=None, ge=1, le=65535)
    db_name: str | None = None
    db_sslmode: SSLMode = SSLMode.VERIFY_FULL
    db_ssl_ca_file: str | None = None
    db_connect_timeout: float = Field(default=5.0, gt=0, le=60)
    db_statement_timeout_ms: int = Field(default=10_000, ge=100, le=900_000)
    # How long a fetched secret is trusted before it is fetched again (rotation safety net).
    db_secret_max_age: int = Field(default=300, ge=0)

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

    page_size_default: int = Field(default=20, ge=1, le=100)
    page_size_max: int = Field(default=100, ge=1, le=1000)

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
