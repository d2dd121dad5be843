"""The local gateway on a real socket, and a keep-alive HTTP client for it (one per thread)."""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: Any


class HttpClient:
    """A tiny HTTP/1.1 client that keeps its connection open; not to be shared by threads."""

    def __init__(self, base: str, timeout: float = 60.0) -> None:
        host, port = base.removeprefix("http://").rsplit(":", 1)
        self.base = base
        self._address = (host, int(port))
        self._timeout = timeout
        self._conn: http.client.HTTPConnection | None = None

    def connect(self) -> None:
        """Open the connection now (e.g. before a barrier), not with the first request."""
        if self._conn is None:
            self._conn = http.client.HTTPConnection(*self._address, timeout=self._timeout)
        self._conn.connect()

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        token: str | None = None,
        extra_headers: dict[str, str] | None = None,
    ) -> Reply:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if data is not None else {}
        headers.update(extra_headers or {})
        if token:
            headers["Authorization"] = f"Bearer {token}"
        # Never sent twice: a write that reached the server must be counted once.
        if self._conn is None:
            self._conn = http.client.HTTPConnection(*self._address, timeout=self._timeout)
        self._conn.request(method, path, body=data, headers=headers)
        response = self._conn.getresponse()
        payload = response.read()
        parsed = json.loads(payload) if payload else None
        return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, parsed)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class LiveGateway:
    """A running :class:`local.gateway.Gateway` and its base URL."""

    def __init__(self, gateway: Any) -> None:
        self.gateway = gateway
        self.base = f"http://127.0.0.1:{gateway.server_address[1]}"

    def worker_pids(self) -> dict[str, frozenset[int]]:
        """The worker processes of each function started so far."""
        pids: dict[str, frozenset[int]] = self.gateway.worker_pids()
        return pids


@contextmanager
def running_gateway(workers: int) -> Iterator[LiveGateway]:
    """The gateway as ``make local`` runs it, on an ephemeral port; workers inherit os.environ."""
    from local.gateway import Gateway

    gateway = Gateway(("127.0.0.1", 0), workers=workers)
    thread = threading.Thread(target=gateway.serve_forever, daemon=True)
    thread.start()
    try:
        yield LiveGateway(gateway)
    finally:
        gateway.shutdown()
        gateway.server_close()  # every environment is told to stop at once, then waited for
        thread.join(timeout=10)
