"""The request path stays free of the ORM: every function under ``functions/``, imported and
invoked once in a fresh interpreter, leaves ``sqlalchemy.orm`` unimported.

Its import and its mapper configuration are more than a tenth of a cold start (see
docs/performance.md); repositories build Core statements on :mod:`blog.tables`, and only code
that wants the unit of work imports :mod:`blog.models`. A new import of the ORM anywhere on a
handler's path fails here, with the function and the response it gave.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from local.functions import REPO, Function, functions
from tests.conftest import create_database, drop_database, migrate, reset_layer_caches

#: Imports the function's module, then calls its handler once; says what was loaded when.
CHILD = """
import importlib, json, sys
job = json.loads(sys.stdin.read())
sys.path[:0] = job["path"]
from cold_child import Context
module = importlib.import_module("app")
after_import = "sqlalchemy.orm" in sys.modules
response = module.lambda_handler(job["event"], Context(job["name"]))
json.dump({"after_import": after_import, "after_call": "sqlalchemy.orm" in sys.modules,
           "response": response}, sys.stdout, default=str)
"""
HANDLERS = sorted(
    (f for f in functions().values() if f.code_dir.parent == REPO / "functions"),
    key=lambda f: f.logical_id,
)


@dataclass(frozen=True)
class World:
    """A seeded database of its own, the events of one round, and the functions' environment."""

    events: dict[str, dict[str, Any]]
    env: dict[str, str]


@pytest.fixture(scope="module")
def world(pg_admin_url: str) -> Iterator[World]:
    """A database seeded as ``make bench-cold`` seeds it, with a first event for each function."""
    from benchmarks.cold_events import EXCLUDED, SIGNING_KEY, Fixtures, cold_event
    from benchmarks.harness import seed

    name = f"blog_cold_{uuid.uuid4().hex[:12]}"
    url = create_database(pg_admin_url, name)
    try:
        migrate(url)
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("JWT_SIGNING_KEY", SIGNING_KEY)
            reset_layer_caches()
            fixtures = Fixtures(url, seed(url))
            rows = fixtures.round()
            events = {
                f.logical_id: {}
                if f.logical_id in EXCLUDED
                else cold_event(f.logical_id, fixtures, rows)
                for f in HANDLERS
            }
        reset_layer_caches()
        env = {
            **os.environ,
            "DATABASE_URL": url,
            "JWT_SIGNING_KEY": SIGNING_KEY,
            "POWERTOOLS_TRACE_DISABLED": "true",
        }
        yield World(events, env)
    finally:
        drop_database(pg_admin_url, name)


def _outcome(response: dict[str, Any]) -> dict[str, int]:
    from benchmarks.cold_child import _outcome as outcome

    return {outcome(response): 1}


@pytest.mark.slow
@pytest.mark.parametrize("function", HANDLERS, ids=lambda f: f.logical_id)
def test_a_function_imported_and_invoked_once_never_loads_the_orm(
    function: Function, world: World
) -> None:
    from benchmarks.cold_events import EXCLUDED, succeeded

    # Given a fresh interpreter with the function's folder and the layer on its path
    job = {
        "path": [str(function.code_dir), str(REPO / "shared"), str(REPO / "benchmarks")],
        "event": world.events[function.logical_id],
        "name": function.logical_id,
    }
    # When it imports the handler's module and handles its first event
    done = subprocess.run(
        [sys.executable, "-c", CHILD],
        input=json.dumps(job),
        capture_output=True,
        text=True,
        env=world.env,
        cwd=function.code_dir,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    # Then the call did its work
    if function.logical_id in EXCLUDED:
        assert "deleted" in result["response"], result["response"]
    else:
        assert succeeded(function.logical_id, _outcome(result["response"])), result["response"]
    # And neither the import nor the first call loaded the ORM
    assert (result["after_import"], result["after_call"]) == (False, False)


def test_the_orm_classes_map_onto_the_core_tables() -> None:
    # One schema: the ORM (for code that wants the unit of work) is mapped onto the Core tables
    # that repositories and Alembic use, so the two cannot drift apart.
    from blog import models, tables

    assert models.Base.metadata is tables.metadata
    mapped = {m.class_.__table__.name: m.class_.__table__ for m in models.Base.registry.mappers}
    assert set(mapped) == {"users", "posts", "idempotency_keys"}  # sign_in_failures: Core only
    assert all(table is tables.metadata.tables[name] for name, table in mapped.items())
