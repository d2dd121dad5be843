"""Warm latency, statements per request and the warm-path profile, through worker processes.

Each variant runs in its own worker (:mod:`benchmarks.worker`), started with the environment
Lambda would give it; the samples are taken round-robin (variant order shuffled every round), so
machine noise hits all variants alike.
"""

from __future__ import annotations

import json
import random
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from benchmarks.harness import COMPARED, REPO, World


class Worker:
    """One worker process and its pipe."""

    def __init__(
        self, variant: str, env: dict[str, str], config: dict[str, Any], log: IO[str]
    ) -> None:
        self.variant = variant
        self.process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.worker", variant],
            cwd=REPO,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            bufsize=1,
        )
        self._send(config)
        ready = self._receive()
        if ready.get("ready") != variant:
            raise RuntimeError(f"worker {variant} did not start: {ready}")

    def _send(self, message: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(message) + "\n")
        self.process.stdin.flush()

    def _receive(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"worker {self.variant} exited ({self.process.wait()})")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def call(self, op: str, **arguments: Any) -> dict[str, Any]:
        """Run ``op`` in the worker; RuntimeError if it failed."""
        self._send({"op": op, **arguments})
        answer = self._receive()
        if "error" in answer:
            raise RuntimeError(f"{self.variant} {op} {arguments}: {answer['error']}")
        return answer

    def close(self) -> None:
        """Ask the worker to quit; kill it if it does not."""
        try:
            self._send({"op": "quit"})
            self.process.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            self.process.kill()
            self.process.wait()


@dataclass
class Workers:
    """The three warm variants."""

    layer: Worker
    floor: Worker
    fastapi: Worker

    def all(self) -> list[Worker]:
        """Every worker."""
        return [self.layer, self.floor, self.fastapi]

    def close(self) -> None:
        """Stop them all."""
        for worker in self.all():
            worker.close()


def start_workers(
    world: World, env_for: dict[str, dict[str, str]], sampled: bool, log_path: Path
) -> Workers:
    """Start the workers; the floor learns each route's SQL from what the layer sends."""
    config = {"seed": {"user_id": world.seed.user_id}, "sampled": sampled}
    log = log_path.open("a")
    started: list[Worker] = []
    try:
        for variant in ("layer", "floor", "fastapi"):
            started.append(Worker(variant, env_for[variant], config, log))
    except BaseException:
        for worker in started:
            worker.close()
        raise
    workers = Workers(*started)
    for route in COMPARED:
        recorded = workers.layer.call("statements", route=route)
        statements = [s for s in recorded["sqlalchemy"] if not s[0].endswith("(SQLAlchemy)")]
        commits = [kind for kind, sql in recorded["wire_calls"] if sql.strip().lower() == "commit"]
        commit = commits[-1] if commits else None
        workers.floor.call("prepare", route=route, statements=statements, commit=commit)
    return workers


def warm_latency(workers: Workers, samples: int, warmup: int) -> dict[str, Any]:
    """Median and p99 (ms) per route and variant, and the ratios of the medians; and, under
    ``connect``, the floor's connection alone (TCP, TLS, authentication, close)."""
    times: dict[str, dict[str, list[float]]] = {
        route: {w.variant: [] for w in workers.all()} for route in COMPARED
    }
    cpu: dict[str, dict[str, list[float]]] = {
        route: {w.variant: [] for w in workers.all()} for route in COMPARED
    }
    connect: list[float] = []
    order = workers.all()
    shuffle = random.Random(20250313)
    for round_ in range(warmup + samples):
        for route in COMPARED:
            shuffle.shuffle(order)
            for worker in order:
                sample = worker.call("run", route=route)
                if round_ >= warmup:
                    times[route][worker.variant].append(sample["ns"] / 1e6)
                    cpu[route][worker.variant].append(sample["cpu_ns"] / 1e6)
        sample = workers.floor.call("run", route="connect")  # connecting alone, for reference
        if round_ >= warmup:
            connect.append(sample["ns"] / 1e6)
    results: dict[str, Any] = {}
    for route, by_variant in times.items():
        stats = {
            variant: {**_stats(ms), "cpu_median_ms": statistics.median(cpu[route][variant])}
            for variant, ms in by_variant.items()
        }
        results[route] = {
            **stats,
            "vs_floor": stats["layer"]["median_ms"] / stats["floor"]["median_ms"],
            "vs_fastapi": stats["layer"]["median_ms"] / stats["fastapi"]["median_ms"],
            "fastapi_vs_floor": stats["fastapi"]["median_ms"] / stats["floor"]["median_ms"],
        }
    results["connect"] = _stats(connect)
    return results


def _stats(ms: list[float]) -> dict[str, Any]:
    ordered = sorted(ms)
    p99 = ordered[min(len(ordered) - 1, max(0, round(0.99 * len(ordered)) - 1))]
    return {
        "samples": len(ms),
        "median_ms": statistics.median(ms),
        "p99_ms": p99,
        "mean_ms": statistics.fmean(ms),
    }


#: The list endpoints whose statements are counted, and the page sizes compared.
LISTS = ("list_users", "list_posts", "search_posts", "list_user_posts")
PAGE_SIZES = (1, 100)


def statements_per_request(layer: Worker) -> dict[str, Any]:
    """Statements reaching the server per list request, at each page size; and per compared
    route. Counted from pg8000's messages (BEGIN and COMMIT included) and cross-checked with
    SQLAlchemy's ``before_cursor_execute`` plus its transaction events."""
    lists: dict[str, Any] = {}
    for route in LISTS:
        counts = {}
        for size in PAGE_SIZES:
            recorded = layer.call("statements", route=route, page_size=size)
            counts[size] = {
                "wire": len(recorded["wire"]),
                "sqlalchemy": len(recorded["sqlalchemy"]),
                "connections": recorded["connections"],
                "round_trips": recorded["round_trips"],
                "items": recorded["items"],
                "statements": recorded["wire"],
            }
        wire = [counts[size]["wire"] for size in PAGE_SIZES]
        lists[route] = {
            "by_page_size": counts,
            "constant": len(set(wire)) == 1,
            "max": max(wire),
        }
    routes = {}
    for route in COMPARED:
        recorded = layer.call("statements", route=route)
        routes[route] = {
            "wire": len(recorded["wire"]),
            "round_trips": recorded["round_trips"],
            "statements": recorded["wire_calls"],
        }
    return {"lists": lists, "compared": routes}
