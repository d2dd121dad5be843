"""The cold-start table of ``make bench``: every function is in it, its events are real requests,
and ``-X importtime`` is read between the child's marks."""

from __future__ import annotations

from types import SimpleNamespace

from benchmarks import report
from benchmarks.cold import _self_times, snapshotted_functions
from benchmarks.cold_events import EXCLUDED, HARNESS_ROUTES, Round, cold_event, succeeded
from benchmarks.harness import Seed
from local.functions import functions

IMPORTTIME = """\
import time: self [us] | cumulative | imported package
import time:       500 |        500 | json
bench-cold: start
import time:      1200 |       1200 |     sqlalchemy.sql
import time:       300 |       1500 |   sqlalchemy
import time:       250 |        250 | app
bench-cold: end
import time:       900 |        900 | uuid
"""


def test_every_function_of_the_template_has_a_cold_event_or_a_reason_to_be_left_out() -> None:
    # Given the template's functions
    found = set(functions())
    measured = found - set(EXCLUDED)

    rows = Round(*range(2, 11), token="token", tag="abc")
    # (Fixtures itself would insert its admin: only what cold_event reads.)
    fixtures = SimpleNamespace(admin=1, seed=Seed(user_id=1))

    # Then each measured one has a first event (a KeyError here means a function was added)
    for logical_id in measured:
        assert cold_event(logical_id, fixtures, rows), logical_id  # type: ignore[arg-type]
    assert set(HARNESS_ROUTES) <= measured
    assert set(EXCLUDED) <= found


def test_success_means_2xx_an_authorized_caller_or_exactly_the_invalid_message_failed() -> None:
    assert succeeded("DeletePostFunction", {"204": 1})
    assert not succeeded("DeletePostFunction", {"404": 1})
    assert succeeded("AuthorizerFunction", {"authorized": 1})
    assert not succeeded("AuthorizerFunction", {"denied": 1})
    assert succeeded("ImportUsersFunction", {"1 failed": 1})
    assert not succeeded("ImportUsersFunction", {"2 failed": 1})


def test_importtime_counts_only_what_the_handler_and_its_first_call_import() -> None:
    assert _self_times(IMPORTTIME) == {"sqlalchemy.sql": 1.2, "sqlalchemy": 0.3, "app": 0.25}


def test_report_prints_one_cold_row_per_function_and_the_importtime_grouping() -> None:
    stats = {
        "median_ms": 300.0, "p90_ms": 320.0, "import_median_ms": 280.0,
        "first_median_ms": 20.0, "samples": 3,
    }  # fmt: skip
    cold = {
        "functions": {
            "GetUserFunction": {**stats, "trigger": "GET /users/{user_id}", "ratio": 0.6,
                                "p90_ratio": 0.64},
        },
        "fastapi": {**stats, "median_ms": 500.0, "p90_ms": 500.0, "by_route": {"get_user": {}}},
        "importtime": {
            "function": "GetUserFunction", "runs": 3, "total_ms": 100.0,
            "packages_ms": {"sqlalchemy": 60.0, "(stdlib)": 30.0},
        },
    }  # fmt: skip

    rows = report.rows({"cold": cold})

    assert [row[1].split(" ")[0] for row in rows if row[0] == "cold start ms"] == [
        "GetUser", "FastAPI"
    ]  # fmt: skip
    assert rows[0][6] == "PASS"
    importtime = [row for row in rows if row[0] == "importtime self ms"]
    assert [row[2] for row in importtime] == ["60", "30", "10"]


def test_report_judges_each_simulated_snapstart_restore_against_its_own_cold_start() -> None:
    stats = {
        "median_ms": 400.0, "p90_ms": 500.0, "import_median_ms": 370.0,
        "first_median_ms": 30.0, "samples": 3, "trigger": "GET /posts/{post_id}",
        "ratio": 0.7, "p90_ratio": 0.7,
    }  # fmt: skip
    restored = {"median_ms": 40.0, "p90_ms": 60.0, "hooks_median_ms": 2.0, "ratio": 0.1,
                "p90_ratio": 0.12}  # fmt: skip
    cold = {
        "functions": {
            "GetPostFunction": {**stats, "snapstart": restored},
            "GetUserFunction": {**stats, "snapstart": {**restored, "median_ms": 120.0,
                                                       "ratio": 0.3}},
            "ListPostsFunction": stats,  # measured without the simulation
        },
        "fastapi": {**stats, "by_route": {"get_user": {}}},
    }  # fmt: skip

    rows = [row for row in report.rows({"cold": cold}) if row[0] == "SnapStart restore ms"]

    # Slowest first, each against its own cold start, judged at 0.25x
    assert [row[1].split(" ")[0] for row in rows] == ["GetUser", "GetPost"]
    assert rows[1][2].startswith("40.0 (2.0 + 38.0)")
    assert rows[1][3].startswith("cold 400")
    assert [row[6] for row in rows] == ["FAIL", "PASS"]


def test_report_shows_each_way_of_reading_a_secret_against_fastapis_cold_start() -> None:
    stats = {"median_ms": 800.0, "p90_ms": 1000.0, "import_median_ms": 750.0,
             "first_median_ms": 50.0, "samples": 3, "ratio": 1.0, "p90_ratio": 1.0}  # fmt: skip
    cold = {
        "functions": {},
        "fastapi": {**stats, "by_route": {}},
        "secret_read": {
            "samples": 3,
            "variants": {
                "sdk": {"median_ms": 200.0, "p90_ms": 260.0, "boto3_loaded": True},
                "extension": {"median_ms": 4.0, "p90_ms": 6.0, "boto3_loaded": False},
            },
        },
    }

    rows = [row for row in report.rows({"cold": cold}) if row[0] == "1st secret read ms"]

    # One row per way, as measured, each a share of FastAPI's cold start; nothing judged
    assert [row[1] for row in rows] == [
        "AWS SDK (import, client, call)", "Parameters and Secrets extension",
    ]  # fmt: skip
    assert [row[2] for row in rows] == ["200.0 | 260.0", "4.0 | 6.0"]
    assert [row[4] for row in rows] == ["+0.25x", "+0.01x"]
    assert all(row[5] == row[6] == "" for row in rows)


def test_restores_are_simulated_for_exactly_the_functions_the_template_snapshots() -> None:
    # Given the functions someone waits for: the routes' and the authorizer
    routed = {name for name, function in functions().items() if function.routes}

    # Then those are the ones whose SnapStart restore the bench simulates (the import and the
    # purge opt out of the template's SnapStart, and register no hooks)
    assert snapshotted_functions() == routed | {"AuthorizerFunction"}
