"""A tap on a pg8000 connection's socket: what the client sends, and in how many round trips.

Used by the tests and by ``make bench`` to count, from the bytes written, the statements that
reach the server (whichever pg8000 method sent them) and the round trips (a flush of requests
followed by a wait for the answer). Tap a connection once it is connected, so that the start-up
and authentication are not counted.
"""

from __future__ import annotations

from typing import Any


class WireTap:
    """Stands in for a connection's socket file, recording as it passes writes and reads on."""

    def __init__(self, sock: Any) -> None:
        self._file = sock
        self._pending = bytearray()
        self._awaiting = False
        self.round_trips = 0
        #: ``(how, SQL)`` of each simple query (``Q``), statement parsed (``P``) or prepared
        #: statement bound by name (``B``), named after the pg8000 method that sends it.
        self.statements: list[tuple[str, str]] = []

    @classmethod
    def install(cls, connection: Any) -> WireTap:
        """Tap ``connection`` (a connected pg8000 connection) from now on."""
        tap = cls(connection._sock)
        connection._sock = tap
        return tap

    def queries(self) -> list[str]:
        """The simple queries written, in order."""
        return [sql for how, sql in self.statements if how == "execute_simple"]

    def write(self, data: bytes) -> Any:
        self._pending += data
        self._messages()
        return self._file.write(data)

    def flush(self) -> Any:
        self._awaiting = True
        return self._file.flush()

    def read(self, *args: Any) -> Any:
        if self._awaiting:
            self._awaiting = False
            self.round_trips += 1
        return self._file.read(*args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._file, name)

    def _messages(self) -> None:
        while len(self._pending) >= 5:
            length = int.from_bytes(self._pending[1:5], "big")
            if len(self._pending) < 1 + length:
                return
            kind, body = self._pending[:1], bytes(self._pending[5 : 1 + length])
            del self._pending[: 1 + length]
            if kind == b"Q":
                self.statements.append(("execute_simple", body[:-1].decode()))
            elif kind == b"P":
                name, _, rest = body.partition(b"\x00")
                how = "execute_unnamed" if not name else "prepare_statement"
                self.statements.append((how, rest.partition(b"\x00")[0].decode()))
            elif kind == b"B":
                statement = body.split(b"\x00", 2)[1]
                if statement:
                    self.statements.append(("execute_named", statement.decode()))
