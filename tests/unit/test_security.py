"""Password hashing: Argon2id, salted, parameters in the hash, constant-time verification."""

from __future__ import annotations

import pytest
from argon2 import extract_parameters

from blog import security
from blog.config import get_settings


def test_hash_is_argon2id_with_configured_parameters() -> None:
    hashed = security.hash_password("correct horse")
    params = extract_parameters(hashed)
    settings = get_settings()
    assert hashed.startswith("$argon2id$")
    assert (params.time_cost, params.memory_cost, params.parallelism) == (
        settings.argon2_time_cost,
        settings.argon2_memory_kib,
        settings.argon2_parallelism,
    )


def test_same_password_gets_a_different_salt_each_time() -> None:
    assert security.hash_password("same") != security.hash_password("same")


def test_verify_accepts_the_password_and_rejects_others() -> None:
    hashed = security.hash_password("correct horse")
    assert security.verify_password(hashed, "correct horse")
    assert not security.verify_password(hashed, "correct horse ")
    assert not security.verify_password(hashed, "")


@pytest.mark.parametrize("bad", ["", "plain-text", "$argon2id$garbage", "$2b$12$bcrypt-like"])
def test_verify_against_a_malformed_hash_is_false_not_an_error(bad: str) -> None:
    assert security.verify_password(bad, "anything") is False


def test_is_password_hash_recognises_only_well_formed_argon2id() -> None:
    assert security.is_password_hash(security.hash_password("x"))
    assert not security.is_password_hash("$argon2id$v=19$m=64")
    assert not security.is_password_hash("$argon2i$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaA")
    assert not security.is_password_hash("secret")


def test_needs_rehash_when_cost_parameters_change(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.conftest import reset_layer_caches

    old = security.hash_password("pw")
    assert not security.needs_rehash(old)
    monkeypatch.setenv("ARGON2_TIME_COST", "3")
    reset_layer_caches()
    try:
        assert security.needs_rehash(old)
        assert security.verify_password(old, "pw")  # old hashes keep working
    finally:
        monkeypatch.undo()
        reset_layer_caches()


def test_default_cost_meets_the_owasp_minimum(monkeypatch: pytest.MonkeyPatch) -> None:
    from blog.config import Settings

    for name in ("ARGON2_TIME_COST", "ARGON2_MEMORY_KIB", "ARGON2_PARALLELISM"):
        monkeypatch.delenv(name, raising=False)
    defaults = Settings(database_url="postgresql+pg8000://x@localhost/db")
    assert defaults.argon2_memory_kib >= 19 * 1024
    assert defaults.argon2_time_cost >= 2


def test_the_dummy_hash_costs_what_a_real_check_costs_and_matches_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tests.conftest import reset_layer_caches

    # Given: the default costs (tests lower them), and no password hashed on the way
    for name in ("ARGON2_TIME_COST", "ARGON2_MEMORY_KIB", "ARGON2_PARALLELISM"):
        monkeypatch.delenv(name, raising=False)
    reset_layer_caches()
    security.dummy_hash.cache_clear()

    def no_hashing(_password: str) -> str:
        raise AssertionError("the dummy hash at the default costs is made without hashing")

    monkeypatch.setattr(security, "hash_password", no_hashing)
    try:
        # When
        dummy = security.dummy_hash()
        # Then: the costs are the configured ones (a check against it takes as long as a real
        # one) and no password matches it
        params = extract_parameters(dummy)
        settings = get_settings()
        assert (params.time_cost, params.memory_cost, params.parallelism) == (
            settings.argon2_time_cost,
            settings.argon2_memory_kib,
            settings.argon2_parallelism,
        )
        assert not security.needs_rehash(dummy)
        assert not security.verify_password(dummy, "")
        assert not security.verify_password(dummy, "password")
    finally:
        monkeypatch.undo()
        reset_layer_caches()
        security.dummy_hash.cache_clear()


def test_the_dummy_hash_follows_configured_costs() -> None:
    security.dummy_hash.cache_clear()
    try:
        dummy = security.dummy_hash()
        params = extract_parameters(dummy)
        settings = get_settings()
        assert (params.time_cost, params.memory_cost) == (
            settings.argon2_time_cost,
            settings.argon2_memory_kib,
        )
        assert not security.verify_password(dummy, "")
    finally:
        security.dummy_hash.cache_clear()
