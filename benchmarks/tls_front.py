"""``python -m benchmarks.tls_front HOST PORT CERT_DIR``: the TLS front of :mod:`local.pg_tls`
in a process of its own. Prints its port, relays until its standard input closes."""

from __future__ import annotations

import sys
from pathlib import Path

from local.pg_tls import PgTlsProxy, TestCertificates


def main(argv: list[str]) -> int:
    """Serve until stdin reaches end of file (the parent exited or closed it)."""
    host, port, certs = argv
    directory = Path(certs)
    certificates = TestCertificates(
        directory / "ca.pem", directory / "server.pem", directory / "server.key"
    )
    with PgTlsProxy((host, int(port)), certificates) as proxy:
        print(proxy.port, flush=True)
        sys.stdin.read()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
