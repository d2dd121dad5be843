"""TLS in front of a PostgreSQL server that has none, like RDS Proxy in front of a database.

The pip-installed PostgreSQL binaries are built without OpenSSL, so tests and benchmarks that
need ``sslmode=verify-full`` put this proxy in front: it answers PostgreSQL's ``SSLRequest``
with ``S``, completes the TLS handshake with a test certificate, and relays the rest to the
server. Plain (non-TLS) clients are refused, as ``hostssl``-only servers do. Also makes the test
certificates: a CA and a server certificate for chosen host names.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import socket
import ssl
import struct
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Final

SSL_REQUEST: Final = 80877103
GSSENC_REQUEST: Final = 80877104


@dataclass(frozen=True)
class TestCertificates:
    """Paths of a CA certificate and of a server certificate and key signed by it."""

    ca_file: Path
    cert_file: Path
    key_file: Path


def make_certificates(
    directory: Path, hosts: tuple[str, ...] = ("localhost", "127.0.0.1")
) -> TestCertificates:
    """A throwaway CA and a server certificate valid for ``hosts`` (names or IP addresses)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "blog-api test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )  # fmt: skip
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    files = TestCertificates(
        directory / "ca.pem", directory / "server.pem", directory / "server.key"
    )
    files.ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    files.key_file.chmod(0o600)
    return files


class PgTlsProxy:
    """Listens on 127.0.0.1 for TLS PostgreSQL clients and relays them to ``backend``."""

    def __init__(self, backend: tuple[str, int], certificates: TestCertificates) -> None:
        self.backend = backend
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(certificates.cert_file, certificates.key_file)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.host = "127.0.0.1"
        self.port = int(self._listener.getsockname()[1])
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def start(self) -> PgTlsProxy:
        """Start accepting connections in the background."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting; connections already relayed end when either side closes."""
        self._stopped.set()
        with contextlib.suppress(OSError):
            self._listener.close()

    def __enter__(self) -> PgTlsProxy:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        with contextlib.ExitStack() as stack:
            stack.enter_context(client)
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                code = self._read_request(client)
                if code == GSSENC_REQUEST:  # "no" to GSS encryption; the client may ask for TLS
                    client.sendall(b"N")
                    code = self._read_request(client)
                if code != SSL_REQUEST:
                    return  # a plain client: refused, as a hostssl-only server would
                client.sendall(b"S")
                secure = self.context.wrap_socket(client, server_side=True)
            except (OSError, ssl.SSLError, struct.error):
                return
            stack.enter_context(secure)
            try:
                server = socket.create_connection(self.backend, timeout=5)
            except OSError:
                return
            stack.enter_context(server)
            server.settimeout(None)
            server.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            upstream = threading.Thread(target=_pipe, args=(secure, server), daemon=True)
            upstream.start()
            _pipe(server, secure)
            upstream.join(timeout=5)

    @staticmethod
    def _read_request(client: socket.socket) -> int:
        header = _recv_exactly(client, 8)
        length, code = struct.unpack("!II", header)
        if length != 8:
            raise struct.error("not an SSL or GSS encryption request")
        return int(code)


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise OSError("connection closed")
        data += chunk
    return data


def _pipe(source: socket.socket, target: socket.socket) -> None:
    try:
        while chunk := source.recv(65536):
            target.sendall(chunk)
    except (OSError, ssl.SSLError):
        pass
    finally:
        for sock in (source, target):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
