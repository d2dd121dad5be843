"""Concurrency and load through the local gateway over real HTTP, on loopback, bounded.

Races on one row must end with exactly one winner and a consistent row; a sustained mixed load
must answer no 5xx and leave exactly the rows its successful writes made. ``SOAK_REQUESTS`` sets
the size of the sustained load (``make soak`` runs a long one).
"""

from __future__ import annotations

import itertools
import os
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.pool import NullPool

from tests.conftest import create_database, drop_database, migrate
from tests.e2e.conftest import TEST_SIGNING_KEY
from tests.e2e.live_gateway import HttpClient, Reply, running_gateway

#: Worker processes per function (Lambda execution environments); cold starts cost 1-3 s each.
WORKERS = 2
#: Worker processes of the register function in the registration race.
RACE_WORKERS = 6
CLIENT_THREADS = 8
SOAK_REQUESTS = int(os.environ.get("SOAK_REQUESTS", "2000"))
PASSWORD = "password-123"

pytestmark = pytest.mark.slow


@dataclass
class Live:
    base: str
    engine: Engine
    admin_token: str = ""
    author_token: str = ""

    def client(self) -> HttpClient:
        return HttpClient(self.base)

    def scalar(self, statement: str, **params: Any) -> Any:
        with self.engine.connect() as conn:
            return conn.execute(text(statement), params).scalar()

    def rows(self, statement: str, **params: Any) -> list[Any]:
        with self.engine.connect() as conn:
            return list(conn.execute(text(statement), params))


def _signup(client: HttpClient, name: str, **extra: Any) -> tuple[int, str]:
    body = {"email": f"{name}@example.com", "username": name, "password": PASSWORD, **extra}
    created = client.call("POST", "/users", body)
    assert created.status == 201, created.body
    token = client.call("POST", "/auth/token", {"login": name, "password": PASSWORD})
    assert token.status == 200, token.body
    return int(created.body["id"]), str(token.body["access_token"])


def _until_warm(request: Callable[[], Reply], deadline_s: float = 180) -> Reply:
    """``request``'s reply once it is not a 5xx: on a busy machine a cold start can outlast the
    gateway's integration timeout (a 503), while the environment goes on starting.

    Sent again as it was: a registration whose first try timed out but went through is a 409.
    """
    deadline = time.monotonic() + deadline_s
    while (reply := request()).status >= 500:
        assert time.monotonic() < deadline, reply.body
    return reply


def _warm_up(live: Live) -> None:
    """Start every worker process of the functions used here, one function at a time (a cold
    start costs seconds of CPU): cold starts are not what these tests measure."""
    barrier = threading.Barrier(WORKERS)

    def warm(_: int) -> None:
        client = live.client()

        def step(method: str, path: str, body: Any = None, token: str | None = None) -> Reply:
            barrier.wait(timeout=300)  # every client calls the same function at the same time,
            return _until_warm(lambda: client.call(method, path, body, token))  # so pools grow

        name = f"warm{uuid.uuid4().hex[:10]}"
        step(
            "POST",
            "/users",
            {"email": f"{name}@example.com", "username": name, "password": PASSWORD},
        )
        token = step("POST", "/auth/token", {"login": name, "password": PASSWORD})
        bearer = token.body["access_token"]
        post = step("POST", "/posts", {"title": "w", "content": "w"}, bearer).body["id"]
        step("POST", f"/posts/{post}/publish", None, bearer)
        step("PATCH", f"/posts/{post}", {"title": "w2"}, bearer)
        step("GET", f"/posts/{post}", None, bearer)
        step("GET", "/posts?q=w")
        step("DELETE", f"/posts/{post}", None, bearer)
        client.close()

    with ThreadPoolExecutor(WORKERS) as pool:
        list(pool.map(warm, range(WORKERS)))


@pytest.fixture(scope="module")
def live(pg_admin_url: str) -> Iterator[Live]:
    """The gateway on a database of this module's own, warm, with an author and an admin."""
    name = f"blog_load_{uuid.uuid4().hex[:8]}"
    url = create_database(pg_admin_url, name)
    migrate(url)
    engine = create_engine(url, poolclass=NullPool)
    try:
        with pytest.MonkeyPatch.context() as env:
            env.setenv("DATABASE_URL", url)  # the worker processes inherit the environment
            env.setenv("JWT_SIGNING_KEY", TEST_SIGNING_KEY)
            with running_gateway(workers=WORKERS) as gateway:
                world = Live(gateway.base, engine)
                _warm_up(world)
                client = world.client()
                admin_id, world.admin_token = _signup(client, f"admin{uuid.uuid4().hex[:8]}")
                with engine.begin() as conn:
                    conn.execute(
                        text("UPDATE users SET is_admin = true WHERE id = :id"), {"id": admin_id}
                    )
                _, world.author_token = _signup(client, f"author{uuid.uuid4().hex[:8]}")
                client.close()  # the server waits for its open connections when it stops
                yield world
    finally:
        engine.dispose()
        drop_database(pg_admin_url, name)


def _all_at_once(
    count: int, live: Live, request: Callable[[HttpClient, int], Reply]
) -> list[Reply]:
    """``count`` requests from as many threads and connections, released together."""
    barrier = threading.Barrier(count)

    def run(i: int) -> Reply:
        client = live.client()
        client.connect()  # the barrier releases requests, not TCP handshakes
        barrier.wait(timeout=60)
        try:
            return request(client, i)
        finally:
            client.close()

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(run, range(count)))


# --- races on one row ------------------------------------------------------------------------


def test_fifty_concurrent_registrations_of_one_email_have_exactly_one_winner(live: Live) -> None:
    tag = uuid.uuid4().hex[:8]
    email = f"race-{tag}@example.com"

    def register(client: HttpClient, i: int) -> Reply:
        # The same address, in different cases: it is unique whatever its case.
        address = email.upper() if i % 2 else email
        body = {"email": address, "username": f"racer{i}-{tag}", "password": PASSWORD}
        return client.call("POST", "/users", body)

    # A gateway whose register function has more execution environments, so that more of the
    # inserts reach the database at the same moment
    with running_gateway(workers=RACE_WORKERS) as gateway:
        racing = Live(gateway.base, live.engine)
        warm = [f"warm{uuid.uuid4().hex[:10]}" for _ in range(RACE_WORKERS)]
        _all_at_once(
            RACE_WORKERS,
            racing,
            lambda client, i: _until_warm(
                lambda: client.call(
                    "POST",
                    "/users",
                    {"email": f"{warm[i]}@example.com", "username": warm[i], "password": PASSWORD},
                )
            ),
        )
        replies = _all_at_once(50, racing, register)

    assert Counter(r.status for r in replies) == {201: 1, 409: 49}, [r.body for r in replies][:3]
    for reply in replies:
        if reply.status == 409:
            assert reply.body["error"]["code"] == "duplicate"
            assert reply.body["error"]["details"] == {"field": "email"}
    assert live.scalar("SELECT count(*) FROM users WHERE email = :e", e=email) == 1
    assert live.scalar("SELECT count(*) FROM users WHERE username LIKE :u", u=f"racer%-{tag}") == 1


ALLOWED = {"edit": {200, 404}, "publish": {200, 404}, "delete": {204, 404}}


@pytest.mark.parametrize("with_deletes", [False, True], ids=["edits-publishes", "with-deletes"])
def test_concurrent_writes_to_one_post_by_author_and_admin_leave_it_consistent(
    live: Live, with_deletes: bool
) -> None:
    author = live.client()
    post = author.call("POST", "/posts", {"title": "t", "content": "c"}, live.author_token).body
    kinds = ["edit", "publish", "delete"] if with_deletes else ["edit", "publish"]
    plan = [
        (kinds[i % len(kinds)], live.author_token if i % 2 else live.admin_token) for i in range(20)
    ]

    # The admin overwrites whatever is current, deliberately (If-Match: *): an admin changing
    # someone else's post must send If-Match.
    force = {"If-Match": "*"}

    def write(client: HttpClient, i: int) -> Reply:
        kind, token = plan[i]
        path = f"/posts/{post['id']}"
        if kind == "edit":
            body = {"title": f"title-{i}", "content": f"c-{i}"}
            return client.call("PATCH", path, body, token, force)
        if kind == "publish":
            return client.call("POST", f"{path}/publish", None, token)
        return client.call("DELETE", path, None, token, force)

    replies = _all_at_once(20, live, write)

    # Every answer is a documented one for its operation, never a 5xx
    for (kind, _), reply in zip(plan, replies, strict=True):
        assert reply.status in ALLOWED[kind], (kind, reply.status, reply.body)
    final = author.call("GET", f"/posts/{post['id']}", None, live.author_token)
    author.close()
    if with_deletes:
        # Exactly one delete won; the post is gone, and no write happened after it
        deletes = Counter(
            r.status for (k, _), r in zip(plan, replies, strict=True) if k == "delete"
        )
        assert deletes[204] == 1
        assert final.status == 404
        assert live.scalar("SELECT count(*) FROM posts WHERE id = :id", id=post["id"]) == 0
    else:
        # Nothing deletes: every write succeeded, one after the other (each locks the row), so
        # the stored post is exactly what the last of them returned, title and content together
        assert all(r.status == 200 for r in replies)
        assert final.status == 200
        assert final.body in [r.body for r in replies]
        assert final.body["published"] is True
        number = final.body["title"].removeprefix("title-")
        assert final.body["content"] == f"c-{number}"


# --- sustained mixed load --------------------------------------------------------------------


@dataclass
class Tally:
    """What one client thread did and saw."""

    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    users: set[int] = field(default_factory=set)
    welcomed: int = 0
    posts: set[int] = field(default_factory=set)  # created and not deleted
    deleted: set[int] = field(default_factory=set)
    unexpected: list[tuple[str, int, Any]] = field(default_factory=list)


EXPECTED = {
    "register": 201,
    "token": 200,
    "create": 201,
    "publish": 200,
    "edit": 200,
    "list": 200,
    "search": 200,
    "get": 200,
    "delete": 204,
}
MIX = {
    "register": 1,
    "token": 1,
    "create": 4,
    "publish": 2,
    "edit": 2,
    "list": 3,
    "search": 2,
    "get": 3,
    "delete": 2,
}


class LoadClient:
    """One client: registers and signs in users, writes and reads their posts, in a random mix."""

    def __init__(self, live: Live, tag: str, seq: int) -> None:
        self.rng = random.Random(seq)  # noqa: S311 - a reproducible mix, not a secret
        self.http = live.client()
        self.tally = Tally()
        self.tokens: dict[str, str] = {}  # username -> a valid token
        self.owner: dict[int, str] = {}  # live post id -> its author's username
        self.drafts: list[int] = []
        self.names = (f"load-{tag}-{seq}-{n}" for n in itertools.count())

    def run(self, budget: Iterator[int]) -> Tally:
        ops, weights = list(MIX), list(MIX.values())
        for _ in budget:
            op = self.rng.choices(ops, weights)[0] if self.tokens else "register"
            if (
                op == "publish"
                and not self.drafts
                or op in {"edit", "get", "delete"}
                and not self.owner
            ):
                op = "create"
            getattr(self, f"do_{op}")()
        self.http.close()
        self.tally.posts = set(self.owner)
        return self.tally

    def _call(
        self, op: str, method: str, path: str, body: Any = None, token: str = ""
    ) -> Reply | None:
        """The reply if it has the status ``op`` always answers here, else None (recorded)."""
        started = time.monotonic()
        reply = self.http.call(method, path, body, token or None)
        self.tally.latencies.append(time.monotonic() - started)
        self.tally.statuses[op, reply.status] += 1
        if reply.status != EXPECTED[op]:
            self.tally.unexpected.append((op, reply.status, reply.body))
            return None
        return reply

    def _post_and_token(self) -> tuple[int, str]:
        post_id = self.rng.choice(sorted(self.owner))
        return post_id, self.tokens[self.owner[post_id]]

    def do_register(self) -> None:
        name = next(self.names)
        welcome = self.rng.random() < 0.25
        body = {
            "email": f"{name}@example.com",
            "username": name,
            "password": PASSWORD,
            "welcome_post": welcome,
        }
        reply = self._call("register", "POST", "/users", body)
        if reply:
            self.tally.users.add(reply.body["id"])
            self.tally.welcomed += welcome
            self._sign_in(name)  # a new user signs in at once (one more request)

    def do_token(self) -> None:
        self._sign_in(self.rng.choice(sorted(self.tokens)))

    def _sign_in(self, name: str) -> None:
        reply = self._call("token", "POST", "/auth/token", {"login": name, "password": PASSWORD})
        if reply:
            self.tokens[name] = reply.body["access_token"]

    def do_create(self) -> None:
        name = self.rng.choice(sorted(self.tokens))
        body = {"title": f"load {self.rng.randrange(10**6)}", "content": "sustained load"}
        reply = self._call("create", "POST", "/posts", body, self.tokens[name])
        if reply:
            self.owner[reply.body["id"]] = name
            self.drafts.append(reply.body["id"])

    def do_publish(self) -> None:
        post_id = self.drafts.pop(self.rng.randrange(len(self.drafts)))
        token = self.tokens[self.owner[post_id]]
        self._call("publish", "POST", f"/posts/{post_id}/publish", None, token)

    def do_edit(self) -> None:
        post_id, token = self._post_and_token()
        self._call("edit", "PATCH", f"/posts/{post_id}", {"title": "edited"}, token)

    def do_get(self) -> None:
        post_id, token = self._post_and_token()
        self._call("get", "GET", f"/posts/{post_id}", None, token)

    def do_delete(self) -> None:
        post_id, token = self._post_and_token()
        if self._call("delete", "DELETE", f"/posts/{post_id}", None, token):
            del self.owner[post_id]
            self.tally.deleted.add(post_id)
            if post_id in self.drafts:
                self.drafts.remove(post_id)

    def do_list(self) -> None:
        self._call("list", "GET", f"/posts?page={self.rng.randint(1, 3)}&page_size=10")

    def do_search(self) -> None:
        self._call("search", "GET", f"/posts?q=load%20{self.rng.randrange(10)}&page_size=5")


def test_sustained_mixed_load_has_no_5xx_and_loses_or_duplicates_no_row(
    live: Live, capsys: pytest.CaptureFixture[str]
) -> None:
    tag = uuid.uuid4().hex[:8]
    budget = iter(range(SOAK_REQUESTS))  # shared: next() on a range iterator is atomic
    lock = threading.Lock()

    def shared_budget() -> Iterator[int]:
        while True:
            with lock:
                item = next(budget, None)
            if item is None:
                return
            yield item

    started = time.monotonic()
    with ThreadPoolExecutor(CLIENT_THREADS) as pool:
        tallies = list(
            pool.map(lambda s: LoadClient(live, tag, s).run(shared_budget()), range(CLIENT_THREADS))
        )
    elapsed = time.monotonic() - started

    statuses: Counter[tuple[str, int]] = sum((t.statuses for t in tallies), Counter())
    histogram = Counter[int]()
    for (_, status), count in statuses.items():
        histogram[status] += count
    requests = sum(histogram.values())
    latencies = sorted(x for t in tallies for x in t.latencies)
    with capsys.disabled():
        print(  # noqa: T201 - the load's summary belongs in the CI log
            f"\nsustained load: {requests} requests in {elapsed:.1f} s = {requests / elapsed:.0f}"
            f" rps over {CLIENT_THREADS} clients; statuses {dict(sorted(histogram.items()))}; "
            f"p50 {latencies[len(latencies) // 2] * 1000:.0f} ms, "
            f"p95 {latencies[int(len(latencies) * 0.95)] * 1000:.0f} ms, "
            f"max {latencies[-1] * 1000:.0f} ms\n  per operation: "
            + ", ".join(f"{op} {status}: {n}" for (op, status), n in sorted(statuses.items()))
        )

    unexpected = [u for t in tallies for u in t.unexpected]
    assert unexpected == []
    assert not [s for s in histogram if s >= 500]
    assert requests >= SOAK_REQUESTS  # a new user's sign-in rides along with its registration
    assert statuses["create", 201] > 0 and statuses["delete", 204] > 0

    # Exactly the rows the successful writes made: none lost, none duplicated
    users = set().union(*(t.users for t in tallies))
    assert statuses["register", 201] == len(users)
    stored_users = {
        row[0]
        for row in live.rows("SELECT id FROM users WHERE username LIKE :p", p=f"load-{tag}-%")
    }
    assert stored_users == users
    posts = set().union(*(t.posts for t in tallies))
    deleted = set().union(*(t.deleted for t in tallies))
    welcomed = sum(t.welcomed for t in tallies)
    assert statuses["create", 201] - statuses["delete", 204] == len(posts)
    stored = live.rows(
        "SELECT id, title LIKE 'Welcome, %' FROM posts WHERE author_id = ANY(:users)",
        users=sorted(users),
    )
    assert {post_id for post_id, welcome in stored if not welcome} == posts
    assert sum(welcome for _, welcome in stored) == welcomed
    assert not deleted & {post_id for post_id, _ in stored}
    assert len(stored) == statuses["create", 201] + welcomed - statuses["delete", 204]
