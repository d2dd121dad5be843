"""The layer over TLS with ``verify-full``: through a TLS front for the embedded PostgreSQL (its
binaries have no OpenSSL), as the functions reach the database through RDS Proxy."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from blog import db as layer_db
from blog.errors import UnavailableError
from local.pg_tls import PgTlsProxy, make_certificates
from tests.conftest import reset_layer_caches


@dataclass
class TlsWorld:
    monkeypatch: pytest.MonkeyPatch
    backend: tuple[str, int]  # the plain server behind the TLS front
    tmp_path: Path

    def use(self, proxy: PgTlsProxy, ca_file: Path, sslmode: str = "verify-full") -> None:
        """Point the layer at ``proxy`` by host name, trusting ``ca_file``."""
        url = make_url(os.environ["DATABASE_URL"]).set(host="localhost", port=proxy.port)
        self.monkeypatch.setenv("DATABASE_URL", url.render_as_string(hide_password=False))
        self.monkeypatch.setenv("DB_SSLMODE", sslmode)
        self.monkeypatch.setenv("DB_SSL_CA_FILE", str(ca_file))
        reset_layer_caches()


@pytest.fixture
def tls(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TlsWorld]:
    plain = make_url(database_url)
    yield TlsWorld(monkeypatch, (plain.host or "127.0.0.1", plain.port or 5432), tmp_path)
    monkeypatch.undo()
    reset_layer_caches()


def test_verify_full_connects_and_queries_over_tls(tls: TlsWorld) -> None:
    certificates = make_certificates(tls.tmp_path, hosts=("localhost", "127.0.0.1"))
    with PgTlsProxy(tls.backend, certificates) as proxy:
        tls.use(proxy, certificates.ca_file)
        with layer_db.transaction() as conn:
            assert conn.scalar(text("SELECT 1")) == 1
            raw = conn.connection.dbapi_connection
            assert raw._usock.version().startswith("TLSv1.")  # the socket really is TLS


def test_verify_full_refuses_a_certificate_for_another_host(tls: TlsWorld) -> None:
    certificates = make_certificates(tls.tmp_path, hosts=("db.example.com",))
    with PgTlsProxy(tls.backend, certificates) as proxy:
        tls.use(proxy, certificates.ca_file)
        with pytest.raises(UnavailableError), layer_db.transaction() as conn:
            conn.execute(text("SELECT 1"))


def test_verify_full_refuses_a_certificate_from_an_unknown_ca(tls: TlsWorld) -> None:
    certificates = make_certificates(tls.tmp_path / "server", hosts=("localhost",))
    stranger = make_certificates(tls.tmp_path / "stranger", hosts=("localhost",))
    with PgTlsProxy(tls.backend, certificates) as proxy:
        tls.use(proxy, stranger.ca_file)
        with pytest.raises(UnavailableError), layer_db.transaction() as conn:
            conn.execute(text("SELECT 1"))


def test_require_encrypts_without_verifying(tls: TlsWorld) -> None:
    certificates = make_certificates(tls.tmp_path, hosts=("db.example.com",))
    with PgTlsProxy(tls.backend, certificates) as proxy:
        tls.use(proxy, certificates.ca_file, sslmode="require")
        with layer_db.transaction() as conn:
            assert conn.scalar(text("SELECT 1")) == 1


def test_the_tls_front_refuses_plain_connections(tls: TlsWorld) -> None:
    certificates = make_certificates(tls.tmp_path, hosts=("localhost",))
    with PgTlsProxy(tls.backend, certificates) as proxy:
        tls.use(proxy, certificates.ca_file, sslmode="disable")
        with pytest.raises(UnavailableError), layer_db.transaction() as conn:
            conn.execute(text("SELECT 1"))
