"""``make bench-scale`` at a tiny size, so that it cannot rot: it runs end to end on the test
server and reports every route, the statements per request and the plans. Nothing is asserted on
timings (those are the benchmark's to judge, on a quiet machine)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import bench_scale
from tests.conftest import reset_layer_caches


@pytest.mark.slow
def test_bench_scale_runs_end_to_end_at_a_tiny_size(
    pg_admin_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "scale.json"
    monkeypatch.setenv("POWERTOOLS_LOG_LEVEL", "ERROR")
    try:
        bench_scale.main(
            [
                "--sizes",
                "S=60:300,L=120:600",
                "--samples",
                "2",
                "--warmup",
                "1",
                "--deep",
                "2",
                "--admin-url",
                pg_admin_url,
                "--out",
                str(out),
            ]  # fmt: skip
        )
    finally:
        reset_layer_caches()
    results = json.loads(out.read_text())
    assert [s["label"] for s in results["sizes"]] == ["S", "L"]
    assert results["sizes"][1]["posts"] == 600
    assert set(results["routes"]) == set(bench_scale.ROUTES)
    for by_size in results["routes"].values():
        assert {label: stats["n"] for label, stats in by_size.items()} == {"S": 2, "L": 2}
    writes = results["writes_with_and_without_new_indexes"]
    assert set(writes) == set(bench_scale.WRITES)
    for by_size in writes.values():
        assert set(by_size) == {"S", "L", "S without", "L without"}
    # Statements per request do not grow with the page size
    for route, counts in results["statements"].items():
        assert counts["1"] == counts["100"], route
    # Every list and search statement was explained, as sent
    for route, plans in results["plans"].items():
        assert plans, route
        assert all("actual time" in plan for plan in plans), route
    assert results["deep_pages"] == {label: {"posts": 2, "users": 2} for label in ("S", "L")}
