"""``python -m benchmarks [--quick] [--out FILE]`` (``make bench``): the performance table.

In one run, on an embedded PostgreSQL behind a TLS front (``verify-full``):

1. warm latency of ``GET /users/{id}``, ``GET /posts?q=`` and ``POST /posts`` through the
   functions' handlers, against raw pg8000 running the same SQL (the floor) and against FastAPI +
   Mangum + SQLAlchemy asyncio + asyncpg, samples interleaved round-robin;
2. cold starts of every function of the template (the migration function aside): a fresh
   isolated python3.13 per sample on the host-architecture build (import of the handler + first
   invocation), against the FastAPI app built the same way, then ``-X importtime`` of the
   slowest function by top-level package; and per function a simulated SnapStart restore (its
   before-snapshot hooks, a fork, then in the fork the after-restore hooks + first invocation)
   against its own cold start;
3. import throughput (:func:`benchmarks.bench_import.measure`) against raw COPY;
4. SQL statements per request of the list endpoints at page sizes 1 and 100;
5. peak RSS after 100 invocations, and the built layer's unzipped size.

Prints one table with the targets as PASS/FAIL (never failing the command on them) and writes
everything as JSON. ``--quick`` takes few samples (CI). ``--profile ROUTE`` prints a cProfile of
the layer's warm path instead; ``--only PART`` measures one part (``make bench-cold``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import cold, report, warm
from benchmarks.harness import COMPARED, REPO, ROUTES, UdpSink, World, lambda_environment

DEFAULT_OUT = REPO / ".bench" / "results.json"
PARTS = ["warm", "statements", "cold", "memory", "import", "sizes"]


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="few samples (CI, ~1-2 minutes)")
    parser.add_argument("--samples", type=int, help="warm samples per route and variant")
    parser.add_argument(
        "--cold-samples", type=int, help="cold starts per function (FastAPI: per route)"
    )
    parser.add_argument("--memory-invocations", type=int, default=100)
    parser.add_argument("--import-users", type=int, help="users per import message")
    parser.add_argument("--import-rounds", type=int)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON results file")
    parser.add_argument("--python313", help="the functions' runtime (default: found)")
    parser.add_argument(
        "--unsampled",
        action="store_true",
        help="X-Ray trace header with Sampled=0 (default: every invocation sampled)",
    )
    parser.add_argument(
        "--skip",
        action="append",
        default=[],
        choices=PARTS,
    )
    parser.add_argument(
        "--only", choices=PARTS, help="measure this part alone (make bench-cold: --only cold)"
    )
    parser.add_argument("--importtime-runs", type=int, help="-X importtime runs of the slowest")
    parser.add_argument(
        "--no-snapstart", action="store_true", help="no simulated SnapStart restores"
    )
    parser.add_argument("--profile", choices=sorted(ROUTES), help="profile the layer's warm path")
    args = parser.parse_args(argv)
    if args.only:
        args.skip = [part for part in PARTS if part != args.only]
    quick = args.quick
    args.importtime_runs = args.importtime_runs or (1 if quick else 5)
    args.samples = args.samples or (40 if quick else 600)
    args.warmup = 5 if quick else 30
    args.cold_samples = args.cold_samples or (3 if quick else 15)
    args.import_users = args.import_users or (2_000 if quick else 10_000)
    args.import_rounds = args.import_rounds or (1 if quick else 7)
    return args


def _log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _environments(world: World, sink: UdpSink, host: Path | None) -> dict[str, dict[str, str]]:
    database = world.database_env()
    return {
        "layer": lambda_environment("BlogApiFunction", host or REPO, database, sink.address),
        "floor": lambda_environment("RawPg8000", REPO, database, sink.address),
        "fastapi": lambda_environment("FastApiFunction", REPO, database, sink.address),
    }


def _import_throughput(world: World, users: int, rounds: int) -> dict[str, Any]:
    """:func:`benchmarks.bench_import.measure` in a process of its own, on a database of its own
    (it empties the tables), through the same TLS front."""
    from benchmarks import bench_import

    url, _ = world.create_database("bench_import")
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        code = (
            "import json, sys\n"
            "from benchmarks.bench_import import measure\n"
            "result = measure(int(sys.argv[1]), int(sys.argv[2]))\n"
            "with open(sys.argv[3], 'w') as f: json.dump(result, f)\n"
        )
        env = {**os.environ, **world.database_env(url), "POWERTOOLS_LOG_LEVEL": "ERROR"}
        subprocess.run(
            [sys.executable, "-c", code, str(users), str(rounds), out.name],
            cwd=REPO,
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        measured: dict[str, Any] = json.loads(Path(out.name).read_text())
    cases = measured["cases"]
    return {
        "users": measured["users"],
        "rounds": measured["rounds"],
        "copy": cases[bench_import.COPY],
        "cases": {name: case for name, case in cases.items() if name != bench_import.COPY},
        "judged": [bench_import.NEW, bench_import.CONFLICTING],
    }


def _cold_table(  # noqa: PLR0913, PLR0917 - the run's parts
    args: argparse.Namespace,
    setup: cold.Setup,
    world: World,
    sink: UdpSink,
    host: Path,
    runtime: Path,
) -> dict[str, Any]:
    """Every function's cold start against the FastAPI app's, then ``-X importtime`` of the
    slowest function by top-level package."""
    from benchmarks.cold_events import SIGNING_KEY, Fixtures, cold_event

    functions = cold.function_packages(host, runtime)
    database = world.database_env()
    env_for = {
        logical_id: {
            **lambda_environment(logical_id, host, database, sink.address),
            "JWT_SIGNING_KEY": SIGNING_KEY,
        }
        for logical_id in functions
    }
    fixtures = Fixtures(world.plain_url, world.seed)
    _log(
        f"cold starts: {args.cold_samples} samples x ({len(functions)} functions + FastAPI on "
        f"{len(COMPARED)} routes + the required packages)"
    )
    table = cold.every_function(
        setup, functions, fixtures, args.cold_samples, env_for, snapstart=not args.no_snapstart
    )
    table["note"] = (
        "Cold: each function's first event is one of events/ aimed at rows of its own per round "
        "(an admin transfers, a fresh user signs out, is deactivated, deleted); the authorizer "
        "checks a token signed with JWT_SIGNING_KEY (on AWS the key is a secret fetched on first "
        "use: the 1st secret read rows, GetPost's, which AWS adds to every cold start); the "
        "import is one SQS batch of 2 messages (2 users, one invalid message). Ratios: "
        "median to FastAPI's median, p90 to its p90, over its samples on its 3 routes. SnapStart "
        "restore: a fresh process imports the function and runs its before-snapshot hooks, then "
        "forks; the fork (the restored environment) runs the after-restore hooks and the first "
        "invocation, on rows of its own; ratio to the function's own cold start in this run. "
        "Lambda's own restore (loading the snapshot's memory) is not part of it."
    )
    from benchmarks import secret_read

    _log(f"first secret read (SDK, SDK primed, extension): {args.cold_samples} samples")
    table["secret_read"] = secret_read.measure(
        setup.python, functions["GetPostFunction"], args.cold_samples
    )
    slowest = max(table["functions"], key=lambda name: table["functions"][name]["median_ms"])
    _log(f"-X importtime of {slowest}: {args.importtime_runs} runs")
    table["importtime"] = cold.import_profile(
        setup.python, functions[slowest], cold_event(slowest, fixtures, fixtures.round()),
        env_for[slowest], args.importtime_runs,
    )  # fmt: skip
    return table


def _summary(args: argparse.Namespace, world: World, python313: str | None) -> str:
    runtime = ""
    if python313:
        version = subprocess.run(
            [python313, "-c", "import platform; print(platform.python_version())"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        runtime = f", cold/memory CPython {version}"
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    return (
        f"{os.cpu_count()} cores ({platform.machine()}, load {load}); warm CPython "
        f"{platform.python_version()}{runtime}; PostgreSQL over TLS verify-full "
        f"(auth {world.auth}); X-Ray {'un' if args.unsampled else ''}sampled; "
        f"{'quick' if args.quick else 'full'} run"
    )


def main(argv: list[str] | None = None) -> int:  # noqa: PLR0912, PLR0915 - the run, in order
    """Measure, print the table, write the JSON."""
    args = _arguments(argv)
    from benchmarks.harness import start_world

    started = time.perf_counter()
    results: dict[str, Any] = {}
    notes: list[str] = []
    needs_builds = not {"cold", "memory"} <= set(args.skip) and not args.profile
    python313 = host = fastapi = runtime = None
    if needs_builds:
        python313 = cold.find_python313(args.python313)
        host, stale = cold.host_build()
        if stale:
            _log(f"WARNING: .aws-sam/host-build is older than {stale} (make bench-build)")
            notes.append(f"WARNING: the host build is older than {stale}: cold/memory are stale.")
        _log("builds (FastAPI app, Lambda runtime packages)")
        runtime = cold.lambda_runtime(python313)
        fastapi = cold.fastapi_package(python313, runtime)
        notes.append(
            "Cold/memory: python3.13 -I -S -B per sample; sys.path = function folder, layer, "
            "runtime's boto3/botocore (as /var/task, /opt/python, /var/runtime); compiled builds."
        )
    _log("database, TLS front, seed")
    world = start_world()
    sink = UdpSink()
    env_for = _environments(world, sink, host)
    try:
        if args.profile:
            log = REPO / ".bench" / "workers.log"
            log.parent.mkdir(exist_ok=True)
            workers = warm.start_workers(world, env_for, not args.unsampled, log)
            try:
                print(workers.layer.call("profile", route=args.profile, count=300)["text"])
            finally:
                workers.close()
            return 0
        if not {"warm", "statements"} <= set(args.skip):
            log = args.out.parent / "workers.log"
            log.parent.mkdir(parents=True, exist_ok=True)
            workers = warm.start_workers(world, env_for, not args.unsampled, log)
            try:
                if "statements" not in args.skip:
                    _log("statements per request")
                    results["statements"] = warm.statements_per_request(workers.layer)
                if "warm" not in args.skip:
                    _log(f"warm latency: {args.samples} samples x 3 variants x 3 routes")
                    results["warm"] = warm.warm_latency(workers, args.samples, args.warmup)
            finally:
                workers.close()
        if needs_builds:
            assert python313 and host and fastapi and runtime
            packages = {
                "layer": {route: cold.layer_package(host, route, runtime) for route in COMPARED},
                "fastapi": dict.fromkeys(COMPARED, fastapi),
            }
            required = cold.required_imports_package(python313, host, runtime)
            setup = cold.Setup(
                python313, packages, world.seed, env_for, not args.unsampled, required
            )
            if "cold" not in args.skip:
                results["cold"] = _cold_table(args, setup, world, sink, host, runtime)
                notes.append(results["cold"]["note"])
            if "memory" not in args.skip:
                _log(f"memory: {args.memory_invocations} invocations per route and variant")
                routes = COMPARED[:1] if args.quick else COMPARED
                results["memory"] = cold.memory(setup, args.memory_invocations, routes)
        if "import" not in args.skip:
            _log(f"import throughput: {args.import_users} users x {args.import_rounds} rounds")
            results["import"] = _import_throughput(world, args.import_users, args.import_rounds)
        if "sizes" not in args.skip:
            results["sizes"] = cold.layer_sizes(fastapi)
        results["xray_datagrams"] = sink.datagrams
        if "warm" in results:
            connect = results["warm"]["connect"]
            notes.append(
                f"Connecting alone (TCP, TLS, SCRAM, backend start, close) takes "
                f"{connect['median_ms']:.2f} ms (median) of every variant's request."
            )
            notes.append(
                "Warm: direct lambda_handler calls in one worker process per variant, samples "
                "interleaved; the floor replays the layer's own SQL (BEGIN/COMMIT included) on a "
                "fresh pg8000 connection."
            )
        notes.append(
            f"X-Ray: tracing active as in the template; {sink.datagrams} segment datagrams went "
            "to a local UDP sink, nothing to AWS."
        )
        results["meta"] = {"summary": _summary(args, world, python313), "notes": notes}
    finally:
        sink.close()
        world.stop()
    results["meta"]["seconds"] = round(time.perf_counter() - started, 1)
    results["meta"]["verdicts"] = report.verdicts(results)
    print(report.table(results))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    _log(f"done in {results['meta']['seconds']} s; JSON in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
