"""Cold starts, memory and package sizes, measured on the artifacts as Lambda would run them.

The functions come from the host-architecture build of the SAM application (``make bench-build``:
``.aws-sam/host-build/<LogicalId>/`` and ``.aws-sam/host-build/SharedLayer/python``, compiled).
The FastAPI comparison app is built likewise under ``.bench/build``: its folder, and its
dependencies as a layer, installed for python3.13 at the versions of ``requirements.lock`` and
compiled. What the Lambda runtime itself provides (boto3, botocore) is installed there too, and
goes on ``sys.path`` after the layer, as ``/var/runtime`` does on Lambda.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from benchmarks.cold_events import EXCLUDED, Fixtures, cold_event, succeeded
from benchmarks.harness import COMPARED, REPO, ROUTES, Seed, event

BENCH_DIR: Final = REPO / ".bench"
BUILD_DIR: Final = BENCH_DIR / "build"
HOST_BUILD: Final = REPO / ".aws-sam" / "host-build"
SAM_BUILD: Final = REPO / ".aws-sam" / "build"
CHILD: Final = Path(__file__).resolve().parent / "cold_child.py"
FASTAPI_APP: Final = Path(__file__).resolve().parent / "fastapi_app" / "app.py"
REQUIRED_APP: Final = Path(__file__).resolve().parent / "required_imports" / "app.py"
#: The comparison app's top-level requirements; the rest of its closure is pip's to resolve.
FASTAPI_REQUIREMENTS: Final = ("fastapi", "mangum", "sqlalchemy[asyncio]", "asyncpg")
RUNTIME_REQUIREMENTS: Final = ("boto3",)
#: The route's function in the template.
LOGICAL_IDS: Final = {
    "get_user": "GetUserFunction",
    "search_posts": "ListPostsFunction",
    "create_post": "CreatePostFunction",
}


@dataclass(frozen=True)
class Package:
    """A function as deployed: its folder, its layer's ``python`` folder, its handler."""

    name: str
    function_dir: Path
    layer_dir: Path
    runtime_dir: Path  # what the Lambda runtime provides under /var/runtime: boto3, botocore
    handler: str = "app.lambda_handler"

    @property
    def path(self) -> list[str]:
        """``sys.path`` entries, in Lambda's order (``/var/task``, ``/opt/python``,
        ``/var/runtime``)."""
        return [str(self.function_dir), str(self.layer_dir), str(self.runtime_dir)]


def find_python313(preferred: str | None) -> str:
    """A python3.13 interpreter with pip: ``preferred``, ``PYTHON313``, PATH, then pyenv's."""
    candidates = [preferred, os.environ.get("PYTHON313"), shutil.which("python3.13")]
    pyenv = shutil.which("pyenv")
    if pyenv:
        root = subprocess.run([pyenv, "root"], capture_output=True, text=True, check=False)
        versions = Path(root.stdout.strip()) / "versions"
        if root.returncode == 0 and versions.is_dir():
            found = sorted(versions.glob("3.13*/bin/python3.13"), reverse=True)
            candidates.extend(str(path) for path in found)
    for candidate in candidates:
        if not candidate:
            continue
        probe = subprocess.run(
            [candidate, "-c", "import sys, pip; print(sys.version_info[:2] == (3, 13))"],
            capture_output=True,
            text=True,
            check=False,
        )
        if probe.returncode == 0 and probe.stdout.strip() == "True":
            return candidate
    raise RuntimeError("no python3.13 with pip found: set PYTHON313=/path/to/python3.13")


def _run(argv: list[str]) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:4])}... failed:\n{result.stdout}{result.stderr}")


def _compile(python: str, *directories: Path) -> None:
    # As lambda_build/Makefile compiles the layer: bytecode that never looks at its source.
    _run(
        [python, "-m", "compileall", "-q", "-j", "0", "--invalidation-mode", "unchecked-hash",
         *map(str, directories)]
    )  # fmt: skip


def _locked_constraints() -> str:
    """``name==version`` of every package of ``requirements.lock``."""
    pins = re.findall(
        r"^([A-Za-z0-9_.\-]+==[^\s;\\]+)", (REPO / "requirements.lock").read_text(), re.M
    )
    return "\n".join(sorted(set(pins))) + "\n"


def _stamp(*parts: str) -> str:
    # The first part names this recipe: a change to it makes every build stale.
    return hashlib.sha256("\0".join(["unchecked-hash pyc", *parts]).encode()).hexdigest()[:16]


def _fresh(directory: Path, stamp: str) -> bool:
    return (directory / ".stamp").is_file() and (directory / ".stamp").read_text() == stamp


def _pip_target(python: str, target: Path, arguments: list[str]) -> None:
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    _run(
        [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "--no-compile", "--only-binary=:all:", "--target", str(target), *arguments]
    )  # fmt: skip


def lambda_runtime(python: str) -> Path:
    """The packages the python3.13 Lambda runtime provides (boto3, botocore and their
    dependencies, at the lock's versions), which the layer leaves out."""
    target = BUILD_DIR / "LambdaRuntime"
    constraints = _locked_constraints()
    stamp = _stamp(python, constraints, *RUNTIME_REQUIREMENTS)
    if not _fresh(target, stamp):
        with tempfile.NamedTemporaryFile("w", suffix=".txt") as pins:
            pins.write(constraints)
            pins.flush()
            _pip_target(python, target / "python", ["-c", pins.name, *RUNTIME_REQUIREMENTS])
        shutil.rmtree(target / "python" / "bin", ignore_errors=True)
        _compile(python, target / "python")
        (target / ".stamp").write_text(stamp)
    return target / "python"


def fastapi_package(python: str, runtime: Path) -> Package:
    """The comparison app, built for python3.13 (once per change of the app or of the lock)."""
    function_dir, layer_root = BUILD_DIR / "FastApiFunction", BUILD_DIR / "FastApiLayer"
    constraints = _locked_constraints()
    stamp = _stamp(python, constraints, *FASTAPI_REQUIREMENTS)
    if not _fresh(layer_root, stamp):
        with tempfile.NamedTemporaryFile("w", suffix=".txt") as pins:
            pins.write(constraints)
            pins.flush()
            _pip_target(python, layer_root / "python", ["-c", pins.name, *FASTAPI_REQUIREMENTS])
        shutil.rmtree(layer_root / "python" / "bin", ignore_errors=True)
        _compile(python, layer_root / "python")
        (layer_root / ".stamp").write_text(stamp)
    function_dir = _function_dir(python, "FastApiFunction", FASTAPI_APP)
    return Package("FastAPI + Mangum", function_dir, layer_root / "python", runtime)


def _function_dir(python: str, name: str, source: Path) -> Path:
    """``source`` as the ``app.py`` of a compiled function folder ``name`` (rebuilt when it
    changes)."""
    function_dir = BUILD_DIR / name
    stamp = _stamp(python, source.read_text())
    if not _fresh(function_dir, stamp):
        shutil.rmtree(function_dir, ignore_errors=True)
        function_dir.mkdir(parents=True)
        shutil.copy2(source, function_dir / "app.py")
        _compile(python, function_dir)
        (function_dir / ".stamp").write_text(stamp)
    return function_dir


def required_imports_package(python: str, build: Path, runtime: Path) -> Package:
    """``benchmarks/required_imports`` on the layer of ``build``: the required packages alone."""
    function_dir = _function_dir(python, "RequiredImports", REQUIRED_APP)
    return Package("required packages", function_dir, build / "SharedLayer" / "python", runtime)


def host_build() -> tuple[Path, str | None]:
    """``.aws-sam/host-build`` (``make bench-build``), and the first source file that changed
    since it was built, if any."""
    from local.functions import functions

    if not (HOST_BUILD / "SharedLayer" / "python" / "blog").is_dir():
        raise RuntimeError("no .aws-sam/host-build: run `make bench-build` first")
    return HOST_BUILD, _stale(HOST_BUILD, functions())


def _stale(build: Path, found: dict[str, Any]) -> str | None:
    """The first source that differs from its copy in ``build``, if any."""
    pairs = [
        (source, build / "SharedLayer" / "python" / "blog" / source.name)
        for source in sorted((REPO / "shared" / "blog").glob("*.py"))
    ]
    for logical_id in sorted(set(found) - set(EXCLUDED)):
        source = found[logical_id].code_dir / "app.py"
        pairs.append((source, build / logical_id / "app.py"))
    for source, copy in pairs:
        if not copy.is_file() or copy.read_bytes() != source.read_bytes():
            return str(source.relative_to(REPO))
    return None


def layer_package(build: Path, route: str, runtime: Path) -> Package:
    """The function of ``route`` in ``build``."""
    logical_id = LOGICAL_IDS[route]
    return Package(logical_id, build / logical_id, build / "SharedLayer" / "python", runtime)


def run_child(
    python: str,
    package: Package,
    events: list[dict[str, Any]],
    env: dict[str, str],
    *,
    invocations: int = 1,
    sampled: bool = True,
    importtime: bool = False,
    snapstart: bool = False,
    hooks: bool = True,
) -> dict[str, Any]:
    """One fresh ``python3.13 -I -S -B`` process running ``package`` (see ``cold_child``);
    with ``importtime``, under ``-X importtime``, whose report comes back as ``stderr``; with
    ``snapstart``, a simulated SnapStart restore (the first event only), ``hooks=False``
    without the layer's SnapStart hooks (a bare fork)."""
    job = {
        "path": package.path,
        "handler": package.handler,
        "events": events,
        "invocations": invocations,
        "sampled": sampled,
        "marks": importtime,
        "snapstart": snapstart,
        "hooks": hooks,
    }
    options = ["-X", "importtime"] if importtime else []
    with tempfile.TemporaryDirectory(prefix="bench-cold-") as scratch:
        result_file = Path(scratch) / "result.json"
        started = time.perf_counter()
        done = subprocess.run(
            [python, "-I", "-S", "-B", *options, str(CHILD), str(result_file)],
            input=json.dumps(job),
            capture_output=True,
            text=True,
            env={
                **env,
                "LAMBDA_TASK_ROOT": str(package.function_dir),
                # What Lambda sets while it initialises a SnapStart version (no connection then).
                **({"AWS_LAMBDA_INITIALIZATION_TYPE": "snap-start"} if snapstart else {}),
            },
            cwd=scratch,
            timeout=120,
            check=False,
        )
        wall = time.perf_counter() - started
        if done.returncode != 0 or not result_file.exists():
            raise RuntimeError(f"{package.name} failed ({done.returncode}):\n{done.stderr[-3000:]}")
        result: dict[str, Any] = json.loads(result_file.read_text())
    result["process_s"] = wall
    if importtime:
        result["stderr"] = done.stderr
    return result


@dataclass(frozen=True)
class Setup:
    """What the fresh processes run: the interpreter, the packages by variant and route, the
    events' seed, the environment by variant, and whether traces are sampled."""

    python: str
    packages: dict[str, dict[str, Package]]
    seed: Seed
    env_for: dict[str, dict[str, str]]
    sampled: bool
    #: The required packages alone (a lower bound for the layer), started once per round.
    required: Package | None = None


def memory(setup: Setup, invocations: int, routes: tuple[str, ...] = COMPARED) -> dict[str, Any]:
    """Peak RSS of a fresh process after ``invocations`` invocations, per route and variant."""
    results: dict[str, Any] = {}
    for route in routes:
        results[route] = {}
        for variant, by_route in setup.packages.items():
            result = run_child(
                setup.python, by_route[route], [event(route, setup.seed)],
                setup.env_for[variant], invocations=invocations, sampled=setup.sampled,
            )  # fmt: skip
            results[route][variant] = {
                "invocations": invocations,
                "maxrss_mib": result["maxrss_kib"] / 1024,
                "statuses": result["statuses"],
            }
    return results


def tree_size(directory: Path) -> int:
    """Bytes of the files under ``directory`` (their unzipped size)."""
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file() and not p.is_symlink())


def layer_sizes(fastapi: Package | None) -> dict[str, Any]:
    """Unzipped size of the built layer (``sam build``'s, else the host build's) with its largest
    parts; the host build's and the comparison app's dependencies for reference."""
    candidates = [(SAM_BUILD, ".aws-sam/build/SharedLayer"), (HOST_BUILD, "host build")]
    found = [(root / "SharedLayer", name) for root, name in candidates]
    found = [(layer, name) for layer, name in found if (layer / "python").is_dir()]
    if not found:
        raise RuntimeError("no built layer: run `make sam-check` or `make bench-build`")
    layer, source = found[0]
    python = layer / "python"
    parts = sorted(
        ((p.name, tree_size(p) if p.is_dir() else p.stat().st_size) for p in python.iterdir()),
        key=lambda item: -item[1],
    )
    result: dict[str, Any] = {
        "layer": {"source": source, "bytes": tree_size(layer), "largest": parts[:6]},
    }
    if source != "host build" and (HOST_BUILD / "SharedLayer").is_dir():
        result["host_layer"] = {"bytes": tree_size(HOST_BUILD / "SharedLayer")}
    if fastapi is not None:
        result["fastapi_layer"] = {"bytes": tree_size(fastapi.layer_dir)}
    return result


def function_packages(build: Path, runtime: Path) -> dict[str, Package]:
    """Every function of the template in ``build`` but :data:`cold_events.EXCLUDED`, by
    logical id."""
    from local.functions import functions

    layer = build / "SharedLayer" / "python"
    return {
        logical_id: Package(logical_id, build / logical_id, layer, runtime, function.handler)
        for logical_id, function in sorted(functions().items())
        if logical_id not in EXCLUDED
    }


def p90(values: list[float]) -> float:
    """The 90th percentile (inclusive method; the one value when there is one)."""
    if len(values) < 2:  # noqa: PLR2004 - quantiles need two points
        return values[0]
    return statistics.quantiles(values, n=10, method="inclusive")[8]


def _stats(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Median and p90 (ms) of the cold start and of its two parts."""
    out: dict[str, Any] = {"samples": len(results)}
    for key, name in (("cold_s", ""), ("import_s", "import_"), ("first_invoke_s", "first_")):
        values = [1000 * r[key] for r in results]
        out[f"{name}median_ms"] = statistics.median(values)
        out[f"{name}p90_ms"] = p90(values)
    out["cpu_ms"] = 1000 * statistics.median(r["cold_cpu_s"] for r in results)
    out["modules"] = results[0]["modules"]
    return out


def _restored_stats(results: list[dict[str, Any]], cold: dict[str, Any]) -> dict[str, Any]:
    """Median and p90 (ms) of the simulated SnapStart restores (after-restore hooks + first
    invocation), the hooks alone and the before-snapshot work, against ``cold``'s median."""
    out: dict[str, Any] = {"samples": len(results)}
    for key, name in (
        ("restored_s", ""), ("after_restore_s", "hooks_"), ("before_snapshot_s", "snapshot_"),
    ):  # fmt: skip
        values = [1000 * r[key] for r in results]
        out[f"{name}median_ms"] = statistics.median(values)
        out[f"{name}p90_ms"] = p90(values)
    out["ratio"] = out["median_ms"] / cold["median_ms"]
    out["p90_ratio"] = out["p90_ms"] / cold["p90_ms"]
    return out


def snapshotted_functions() -> set[str]:
    """The functions that ``SnapStart=enabled`` snapshots: all but those that opt out of the
    template's Globals setting (``IgnoreGlobals``: the SQS import, the hourly purge, the
    migrations), whose restores would simulate nothing that is deployed."""
    from local.functions import template

    resources = template()["Resources"]
    return {
        name
        for name, resource in resources.items()
        if resource["Type"] == "AWS::Serverless::Function"
        and "SnapStart" not in (resource.get("IgnoreGlobals") or [])
    }


def every_function(
    setup: Setup,
    functions: dict[str, Package],
    fixtures: Fixtures,
    samples: int,
    env_for: dict[str, dict[str, str]],
    *,
    snapstart: bool = True,
) -> dict[str, Any]:
    """The cold start (import + first invocation) of every function and of the FastAPI app, in
    fresh processes, samples interleaved round-robin: each round starts every function once and
    the FastAPI app once per route it implements, spread among them. With ``snapstart``, each
    function's sample is followed by a simulated SnapStart restore of it (``cold_child``), on
    rows of its own."""
    times: dict[str, list[dict[str, Any]]] = {logical_id: [] for logical_id in functions}
    restores: dict[str, list[dict[str, Any]]] = {logical_id: [] for logical_id in functions}
    fastapi: dict[str, list[dict[str, Any]]] = {route: [] for route in COMPARED}
    required: list[dict[str, Any]] = []
    order = list(functions)
    stride = -(-len(order) // len(COMPARED))
    snapshotted = snapshotted_functions()
    for _ in range(samples):
        rows = fixtures.round()
        restore_rows = fixtures.round() if snapstart else rows
        if setup.required is not None:
            result = run_child(
                setup.python, setup.required, [event(COMPARED[0], setup.seed)],
                setup.env_for["layer"], sampled=setup.sampled,
            )  # fmt: skip
            if result["statuses"] != {"200": 1}:
                raise RuntimeError(f"required packages: statuses {result['statuses']}")
            required.append(result)
        for index, logical_id in enumerate(order):
            if index % stride == 0:
                route = COMPARED[index // stride]
                result = run_child(
                    setup.python, setup.packages["fastapi"][route], [event(route, setup.seed)],
                    setup.env_for["fastapi"], sampled=setup.sampled,
                )  # fmt: skip
                if result["statuses"] != {str(ROUTES[route][2]): 1}:
                    raise RuntimeError(f"FastAPI {route}: statuses {result['statuses']}")
                fastapi[route].append(result)
            result = run_child(
                setup.python, functions[logical_id], [cold_event(logical_id, fixtures, rows)],
                env_for[logical_id], sampled=setup.sampled,
            )  # fmt: skip
            if not succeeded(logical_id, result["statuses"]):
                raise RuntimeError(f"{logical_id}: statuses {result['statuses']}")
            times[logical_id].append(result)
            if snapstart and logical_id in snapshotted:
                result = run_child(
                    setup.python, functions[logical_id],
                    [cold_event(logical_id, fixtures, restore_rows)], env_for[logical_id],
                    sampled=setup.sampled, snapstart=True,
                )  # fmt: skip
                if not succeeded(logical_id, result["statuses"]):
                    raise RuntimeError(f"{logical_id} restored: statuses {result['statuses']}")
                restores[logical_id].append(result)
    reference = _stats([r for results in fastapi.values() for r in results])
    reference["by_route"] = {route: _stats(results) for route, results in fastapi.items()}
    from local.functions import functions as template_functions

    triggers = {
        logical_id: " ".join(function.routes[0]) if function.routes else ""
        for logical_id, function in template_functions().items()
    }
    triggers.update(AuthorizerFunction="HTTP API authorizer", ImportUsersFunction="SQS batch")
    summary: dict[str, Any] = {}
    for logical_id, results in times.items():
        stats = {"trigger": triggers.get(logical_id, ""), **_stats(results)}
        stats["ratio"] = stats["median_ms"] / reference["median_ms"]
        stats["p90_ratio"] = stats["p90_ms"] / reference["p90_ms"]
        if restores[logical_id]:
            stats["snapstart"] = _restored_stats(restores[logical_id], stats)
        summary[logical_id] = stats
    out: dict[str, Any] = {"functions": summary, "fastapi": reference, "excluded": dict(EXCLUDED)}
    if required:
        bound = _stats(required)
        bound["ratio"] = bound["median_ms"] / reference["median_ms"]
        out["required_packages"] = bound
    return out


#: ``import time: self [us] | cumulative | imported package`` (the package indented by depth).
_IMPORTTIME: Final = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \| ( *)(\S+)\s*$")


def _self_times(stderr: str) -> dict[str, float]:
    """Self time (ms) per module imported between the child's marks (import + first call)."""
    inside, found = False, dict[str, float]()
    for line in stderr.splitlines():
        if line.startswith("bench-cold: "):
            inside = line.endswith("start")
            continue
        match = _IMPORTTIME.match(line)
        if inside and match:
            found[match.group(4)] = found.get(match.group(4), 0.0) + int(match.group(1)) / 1000
    return found


def import_profile(
    python: str, package: Package, event_: dict[str, Any], env: dict[str, str], runs: int
) -> dict[str, Any]:
    """``-X importtime`` of ``package``'s cold start: self time summed per top-level package
    (the standard library as one), median over ``runs`` fresh processes, largest first."""
    # The measured interpreter's standard library (3.13 has modules 3.11 has not).
    listed = subprocess.run(
        [python, "-I", "-c", "import sys; print(*sys.stdlib_module_names)"],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    stdlib = {*listed, *(f"_{name}" for name in listed)}
    per_run: list[dict[str, float]] = []
    modules: list[dict[str, float]] = []
    for _ in range(runs):
        result = run_child(python, package, [event_], env, importtime=True)
        by_module = _self_times(result["stderr"])
        grouped: dict[str, float] = {}
        for module, ms in by_module.items():
            top = module.split(".")[0]
            key = "(stdlib)" if top in stdlib or top.startswith("_sysconfigdata") else top
            grouped[key] = grouped.get(key, 0.0) + ms
        per_run.append(grouped)
        modules.append(by_module)
    names = {name for grouped in per_run for name in grouped}
    packages = {
        name: statistics.median(grouped.get(name, 0.0) for grouped in per_run) for name in names
    }
    module_names = {name for found in modules for name in found}
    largest = sorted(
        ((name, statistics.median(f.get(name, 0.0) for f in modules)) for name in module_names),
        key=lambda item: -item[1],
    )[:15]
    return {
        "function": package.name,
        "runs": runs,
        "total_ms": statistics.median(sum(grouped.values()) for grouped in per_run),
        "packages_ms": dict(sorted(packages.items(), key=lambda item: -item[1])),
        "largest_modules_ms": dict(largest),
    }
