"""Schemathesis fuzzes the whole API over real HTTP, against the committed ``openapi.json``.

Every operation of the document is tested for three callers: anonymous, a registered user and an
admin, each with a real bearer token (a new account replaces one the fuzzer deactivated or
deleted). For each operation schemathesis runs its examples, coverage (boundary values, each
documented constraint broken, missing headers) and fuzzing phases, in positive and negative
generation modes, derandomized with a fixed seed. Every response goes through every check
schemathesis has (not_a_server_error, status_code_conformance, content_type_conformance,
response_headers_conformance, response_schema_conformance, negative_data_rejection,
positive_data_acceptance, missing_required_header, ignored_auth, ...) but the ones
``excluded_checks`` leaves out, each with its reason. Any failure fails the test.

The database starts with a few users and posts, and half the generated ids are mapped onto
theirs, so that operations succeed too (and their answers are checked), not only with 404.

How many test cases and HTTP requests were generated is printed in pytest's terminal summary.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance, unsupported_method

from blog.repositories import MAX_OFFSET
from tests.conftest import REPO
from tests.e2e.conftest import SUMMARY, Http

OPENAPI = REPO / "openapi.json"
ROLES = ("anonymous", "user", "admin")
#: Fuzzing-phase cases per operation and caller (the examples and coverage phases add their own);
#: sized for about three minutes in all on two cores.
MAX_EXAMPLES = 20
SEED = 20240229
#: Users and posts made before the fuzzing starts, onto whose ids half the generated ones go.
WORLD_USERS = 10
POSTS_EACH = 2
WORLD = {"user_id": WORLD_USERS, "post_id": WORLD_USERS * POSTS_EACH}
ID_MAX = 2**31 - 1
DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE = 20, 100

EXCLUDED_CHECKS = [
    # A method with no route on a path (TRACE /users) gets API Gateway's own answer, 404 Not
    # Found: HTTP APIs have no 405 (nor an Allow header), and no code of ours runs for it. The
    # local gateway answers as API Gateway does.
    unsupported_method,
]
TRANSFER = "/users/{user_id}/posts/transfer"
# Operations after whose success the caller's own account can no longer sign requests.
ENDS_ACCOUNT = {("DELETE", "/users/{user_id}"), ("POST", "/users/{user_id}/deactivate")}


def excluded_checks(case: schemathesis.Case, role: str = "user") -> list[Any]:
    """``EXCLUDED_CHECKS``, and positive_data_acceptance for requests that JSON Schema cannot
    tell apart from valid ones, which the API refuses with a 4xx (their status and body are
    still checked):

    - a transfer of a user's posts to that same user (``to_user_id`` equal to the path's id);
    - text with a character of a Unicode category the API refuses in emails and titles (format
      characters, fillers, unassigned code points): a pattern cannot name Unicode categories;
    - an email whose Unicode domain IDNA 2008 refuses;
    - a write with ``If-Match`` (other than ``*``), or by an admin, to an operation that takes
      one: whether it passes depends on the version the caller read (412 when stale; 428 for
      an admin without one);
    - a body that is not a JSON object (``0``): with a header parameter to generate as well,
      schemathesis counts some such cases among the positive ones, though every body schema
      is an object (the API answers 422);
    - a list's ``cursor`` and ``q``, and deep page numbers (below).
    """
    takes_if_match = any(
        p.name.lower() == "if-match"
        for p in case.operation.headers  # type: ignore[attr-defined]
    )
    sent = {k.lower(): v for k, v in (case.headers or {}).items()}.get("if-match")
    version_decides = takes_if_match and (
        role == "admin" or (sent is not None and sent.strip() != "*")
    )
    not_an_object = bool(case.operation.body) and not isinstance(case.body, dict | None)
    if version_decides or not_an_object:
        return [*EXCLUDED_CHECKS, positive_data_acceptance]
    if isinstance(case.body, dict):
        if case.operation.path == TRANSFER:
            to, source = case.body.get("to_user_id"), (case.path_parameters or {}).get("user_id")
            if _number(to) is not None and _number(to) == _number(source):
                return [*EXCLUDED_CHECKS, positive_data_acceptance]
        if any(_not_expressible(name, value) for name, value in case.body.items()):
            return [*EXCLUDED_CHECKS, positive_data_acceptance]
    # Nor can it say which strings are cursors the API issued (opaque, checksummed, tied to one
    # list), nor that a search text needs three letters or digits in a row (a trigram, in the
    # database's locale): both are refused with a 4xx whose status and body are still checked.
    query = case.query or {}
    if {"cursor", "q"} & set(query):
        return [*EXCLUDED_CHECKS, positive_data_acceptance]
    # Nor that a page number must start within the first MAX_OFFSET rows (which depends on the
    # page size): deeper pages are refused with 422, pointing at next_cursor.
    page, size = _number(query.get("page")), _number(query.get("page_size"))
    if page is not None and (page - 1) * min(size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE) > MAX_OFFSET:
        return [*EXCLUDED_CHECKS, positive_data_acceptance]
    return EXCLUDED_CHECKS


VALID_KEY = re.compile(r"[\x21-\x7e]{1,255}")


def fresh_idempotency_key(case: schemathesis.Case) -> None:
    """A valid ``Idempotency-Key`` becomes a new one for each case: hypothesis repeats values,
    and a key already used for another body is (rightly) a 422, which no schema can foresee.
    Invalid keys are sent as generated."""
    for name, value in list((case.headers or {}).items()):
        if name.lower() == "idempotency-key" and VALID_KEY.fullmatch(str(value)):
            case.headers[name] = uuid.uuid4().hex  # type: ignore[index]


def _not_expressible(name: str, value: object) -> bool:
    from blog.domain import canonical_email, invisible_character

    if name not in {"email", "title"} or not isinstance(value, str):
        return False
    if invisible_character(value, unassigned=name == "email") is not None:
        return True
    if name == "email":
        try:
            canonical_email(value)
        except ValueError:
            return True
    return False


def _number(value: object) -> float | None:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


@dataclass
class Caller:
    """One kind of caller and its bearer token; a new account once the fuzzer ended the last."""

    role: str
    http: Http
    token: str | None = None
    user_id: int | None = None

    def headers(self) -> dict[str, str]:
        if self.role == "anonymous":
            return {}
        if self.token is None:
            self.sign_up()
        return {"Authorization": f"Bearer {self.token}"}

    def sign_up(self) -> None:
        user, self.token = self.http.user(admin=self.role == "admin")
        self.user_id = user["id"]
        TALLY["accounts"] += 1

    def after_call(self, case: schemathesis.Case, response: schemathesis.Response) -> None:
        own = str((case.path_parameters or {}).get("user_id")) == str(self.user_id)
        if own and (case.method.upper(), case.operation.path) in ENDS_ACCOUNT:
            if response.status_code < 300:
                self.token = None


#: Over the module: test cases, HTTP requests (checks send some of their own) and accounts made.
TALLY: Counter[str] = Counter()
CALLERS: dict[str, Caller] = {}
#: The caller of the running test, for the hook.
CURRENT: list[Caller] = []

# Loaded at collection: one test per operation and caller. The gateway's URL is known only once
# it runs, so every call names it.
schema = schemathesis.openapi.from_path(OPENAPI)
schema.config.update(request_timeout=60)
schema.config.seed = SEED
schema.config.generation.update(
    modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
    max_examples=MAX_EXAMPLES,
    deterministic=True,
    # The callers' tokens are sent as they are; schemathesis does not make up Authorization
    # headers. (ignored_auth still checks that each protected operation refuses a request without
    # one, or with a bad one.)
    with_security_parameters=False,
)
schema.config.output.sanitization.update(enabled=False)  # test tokens only; failures show them


def _into_world(path_parameters: Any) -> Any:
    # Only positive cases' (plain dicts), only valid ids, onto valid ids.
    if not isinstance(path_parameters, dict):
        return path_parameters
    return {
        name: 1 + value % WORLD[name]
        if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= ID_MAX
        else value
        for name, value in path_parameters.items()
    }


@schema.hook("before_generate_path_parameters")
def _half_existing(_context: Any, strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(strategy, strategy.map(_into_world))


@schema.hook("after_call")
def _after_call(_context: Any, case: schemathesis.Case, response: schemathesis.Response) -> None:
    TALLY["requests"] += 1
    TALLY[f"status {response.status_code}"] += 1
    if CURRENT:
        CURRENT[0].after_call(case, response)


@pytest.fixture(scope="module", autouse=True)
def world(request: pytest.FixtureRequest, http: Http) -> Iterator[None]:
    """Users 1..WORLD_USERS (the first two sign the user's and the admin's requests) and
    their posts, every other one published; afterwards, the summary line."""
    started = time.monotonic()
    for role in ("user", "admin"):
        CALLERS[role] = Caller(role, http)
        CALLERS[role].sign_up()
    tokens = [caller.token for caller in CALLERS.values()]
    tokens += [http.user()[1] for _ in range(WORLD_USERS - len(tokens))]
    for n in range(POSTS_EACH):
        for token in tokens:
            post = http.call("POST", "/posts", {"title": f"t{n}", "content": "c"}, token=token)
            assert post.status == 201, post.body
            if post.body["id"] % 2:
                published = http.call("POST", f"/posts/{post.body['id']}/publish", token=token)
                assert published.status == 200, published.body
    CALLERS["anonymous"] = Caller("anonymous", http)
    yield
    statuses = ", ".join(
        f"{key.removeprefix('status ')}: {n}" for key, n in sorted(TALLY.items()) if " " in key
    )
    request.config.stash.setdefault(SUMMARY, []).append(
        f"schemathesis: {TALLY['cases']} test cases, {TALLY['requests']} requests "
        f"in {time.monotonic() - started:.0f} s (statuses {statuses}); "
        f"{TALLY['accounts']} accounts signed up for the callers"
    )
    server_errors = sum(n for key, n in TALLY.items() if key.startswith("status 5"))
    out = REPO / ".bench" / "schemathesis.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "cases": TALLY["cases"],
                "requests": TALLY["requests"],
                "5xx": server_errors,
                "statuses": {
                    k.removeprefix("status "): n for k, n in sorted(TALLY.items()) if " " in k
                },
            },
            indent=2,
        )
    )


@pytest.fixture(params=ROLES)
def caller(request: pytest.FixtureRequest) -> Iterator[Caller]:
    """The same caller (and account, while it lasts) for every operation."""
    CURRENT[:] = [CALLERS[request.param]]
    yield CURRENT[0]
    CURRENT.clear()


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
@pytest.mark.slow
def test_every_operation_conforms(case: schemathesis.Case, http: Http, caller: Caller) -> None:
    TALLY["cases"] += 1
    fresh_idempotency_key(case)
    case.call_and_validate(
        base_url=http.base,
        headers=caller.headers(),
        excluded_checks=excluded_checks(case, caller.role),
    )
