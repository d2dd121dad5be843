"""The error table and start-up validation of settings."""

from __future__ import annotations

import pytest
from pydantic import ValidationError as SettingsError

from blog import errors
from blog.config import Settings, SSLMode


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (errors.ValidationError(), 422),
        (errors.AuthenticationError(), 401),
        (errors.ForbiddenError(), 403),
        (errors.NotFoundError(), 404),
        (errors.DuplicateError(), 409),
        (errors.ConflictError(), 409),
        (errors.TransactionError(), 503),
        (errors.UnavailableError(), 503),
        (errors.DatabaseError(), 500),
    ],
)
def test_each_domain_error_maps_to_its_http_status(error: errors.DomainError, status: int) -> None:
    assert errors.http_status_for(error) == status
    assert error.status == status


def test_subclasses_inherit_the_nearest_mapped_status() -> None:
    class SpecialNotFound(errors.NotFoundError):
        pass

    assert errors.http_status_for(SpecialNotFound()) == 404
    assert errors.http_status_for(RuntimeError()) == 500


def test_every_error_has_a_stable_code_and_a_default_message() -> None:
    codes = {cls.code for cls in errors.HTTP_STATUS}
    assert len(codes) == len(errors.HTTP_STATUS)
    assert errors.NotFoundError().message == "Not found"
    assert errors.NotFoundError("Post 3 not found").message == "Post 3 not found"


def test_settings_require_a_credential_source(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("DB_SECRET_ARN", raising=False)
    with pytest.raises(RuntimeError, match=r"DATABASE_URL .* DB_SECRET_ARN"):
        Settings().require_database()


def test_settings_name_the_invalid_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DB_SSLMODE", "sometimes")
    with pytest.raises(SettingsError, match="db_sslmode"):
        Settings(database_url="postgresql+pg8000://x@localhost/db")


def test_settings_default_to_verified_tls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DB_SSLMODE", raising=False)
    assert Settings(db_secret_arn="arn:aws:secretsmanager:eu-west-1:1:secret:x").db_sslmode is (
        SSLMode.VERIFY_FULL
    )
