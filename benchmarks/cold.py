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
    for logical_id in LOGICAL_IDS.values():
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
) -> dict[str, Any]:
    """One fresh ``python3.13 -I -S -B`` process running ``package`` (see ``cold_child``)."""
    job = {
        "path": package.path,
        "handler": package.handler,
        "events": events,
        "invocations": invocations,
        "sampled": sampled,
    }
    with tempfile.TemporaryDirectory(prefix="bench-cold-") as scratch:
        result_file = Path(scratch) / "result.json"
        started = time.perf_counter()
        done = subprocess.run(
            [python, "-I", "-S", "-B", str(CHILD), str(result_file)],
            input=json.dumps(job),
            capture_output=True,
            text=True,
            env={**env, "LAMBDA_TASK_ROOT": str(package.function_dir)},
            cwd=scratch,
            timeout=120,
            check=False,
        )
        wall = time.perf_counter() - started
        if done.returncode != 0 or not result_file.exists():
            raise RuntimeError(f"{package.name} failed ({done.returncode}):\n{done.stderr[-3000:]}")
        result: dict[str, Any] = json.loads(result_file.read_text())
    result["process_s"] = wall
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


def cold_starts(setup: Setup, samples: int) -> dict[str, Any]:
    """Median cold start (import of the handler's module + first invocation) per route and
    variant, samples interleaved round-robin."""
    times: dict[str, dict[str, list[dict[str, Any]]]] = {
        route: {variant: [] for variant in setup.packages} for route in COMPARED
    }
    required: list[dict[str, Any]] = []
    for _ in range(samples):
        if setup.required is not None:
            result = run_child(
                setup.python, setup.required, [event(COMPARED[0], setup.seed)],
                setup.env_for["layer"], sampled=setup.sampled,
            )  # fmt: skip
            if result["statuses"] != {"200": 1}:
                raise RuntimeError(f"required packages: statuses {result['statuses']}")
            required.append(result)
        for route in COMPARED:
            for variant, by_route in setup.packages.items():
                result = run_child(
                    setup.python, by_route[route], [event(route, setup.seed)],
                    setup.env_for[variant], sampled=setup.sampled,
                )  # fmt: skip
                expected = str(ROUTES[route][2])
                if result["statuses"] != {expected: 1}:
                    raise RuntimeError(f"{variant} {route}: statuses {result['statuses']}")
                times[route][variant].append(result)
    summary: dict[str, Any] = {}
    for route, by_variant in times.items():
        summary[route] = {
            variant: {
                "samples": len(results),
                "median_ms": 1000 * statistics.median(r["cold_s"] for r in results),
                "import_ms": 1000 * statistics.median(r["import_s"] for r in results),
                "first_invoke_ms": 1000 * statistics.median(r["first_invoke_s"] for r in results),
                "cpu_ms": 1000 * statistics.median(r["cold_cpu_s"] for r in results),
                "process_ms": 1000 * statistics.median(r["process_s"] for r in results),
                "modules": results[0]["modules"],
            }
            for variant, results in by_variant.items()
        }
        summary[route]["ratio"] = (
            summary[route]["layer"]["median_ms"] / (summary[route]["fastapi"]["median_ms"])
        )
    if required:
        fastapi = [r["cold_s"] for by_variant in times.values() for r in by_variant["fastapi"]]
        median_ms = 1000 * statistics.median(r["cold_s"] for r in required)
        fastapi_ms = 1000 * statistics.median(fastapi)
        summary["required_packages"] = {
            "samples": len(required),
            "median_ms": median_ms,
            "import_ms": 1000 * statistics.median(r["import_s"] for r in required),
            "modules": required[0]["modules"],
            "fastapi_median_ms": fastapi_ms,
            "ratio": median_ms / fastapi_ms,
        }
    return summary


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
