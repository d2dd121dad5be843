"""Check what ``sam build`` left in .aws-sam/build (``make sam-check`` runs it), print a summary.

The functions run on arm64 while CI builds on x86_64 without a container, so every compiled
extension must be an aarch64 ELF; the migration function must carry Alembic and its scripts.
lambda_build/Makefile builds everything; this checks what it promises: every module compiled
for python3.13 (unchecked-hash bytecode, which Lambda's read-only /opt and /var/task need), no
copy of what the runtime ships (boto3, botocore, urllib3, s3transfer) and a layer within its
size budget. ``--build-dir .aws-sam/host-build --arch x86_64`` checks ``make bench-build``'s.
Standard library only: it runs on the machine's python3, without .venv.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BUILD = REPO / ".aws-sam" / "build"
EM_MACHINE = {"aarch64": 183, "x86_64": 62}  # ELF e_machine
PYC_TAG = "cpython-313"
PYC_MAGIC = (3571).to_bytes(2, "little") + b"\r\n"  # importlib.util.MAGIC_NUMBER of 3.13
PYC_UNCHECKED_HASH = 0b01  # PEP 552 flags: hash-based, check_source off
RUNTIME_PROVIDED = ("boto3", "botocore", "urllib3", "s3transfer")  # the Lambda runtime's own
LAYER_MAX_BYTES = 40 * 10**6  # unzipped, 40 MB (38.1 MiB)
# lambda_build/Makefile prunes Powertools' Swagger UI bundle from the layer.
SWAGGER = "enable_swagger("
# What lambda_build/lazy_reexports.py writes into each __init__.py it rewrites.
LAZY_MARK = "# Rewritten at build time by lambda_build/lazy_reexports.py"


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def _mib(size: int) -> str:
    return f"{size / 2**20:.1f} MiB"


def bytecode_problems(root: Path) -> list[str]:
    """Every .py under ``root`` has its unchecked-hash python3.13 .pyc, and no other .pyc."""
    found: list[str] = []
    for source in sorted(root.rglob("*.py")):
        pyc = source.parent / "__pycache__" / f"{source.stem}.{PYC_TAG}.pyc"
        if not pyc.is_file():
            found.append(f"no {PYC_TAG} bytecode for {source.relative_to(root)}")
            continue
        header = pyc.read_bytes()[:8]
        if header[:4] != PYC_MAGIC or int.from_bytes(header[4:8], "little") != PYC_UNCHECKED_HASH:
            found.append(f"not unchecked-hash python3.13 bytecode: {pyc.relative_to(root)}")
    for pyc in sorted(root.rglob("*.pyc")):
        source = pyc.parent.parent / f"{pyc.name.split('.', 1)[0]}.py"
        if pyc.parent.name != "__pycache__" or f".{PYC_TAG}.pyc" not in pyc.name:
            found.append(f"foreign bytecode: {pyc.relative_to(root)}")
        elif not source.is_file():
            found.append(f"bytecode without its source: {pyc.relative_to(root)}")
    return found if len(found) <= 5 else [*found[:3], f"... and {len(found) - 3} more like these"]


def lazy_reexports() -> list[str]:
    """The packages whose ``__init__`` the layer's build rewrites (``LAZY_REEXPORTS`` of
    lambda_build/Makefile)."""
    makefile = (REPO / "lambda_build" / "Makefile").read_text(encoding="utf-8")
    match = re.search(r"^LAZY_REEXPORTS := (.+)$", makefile, re.MULTILINE)
    return match.group(1).split() if match else []


#: Fewer texts than this, and the recording missed the functions' imports.
CODE_CACHE_MIN_TEXTS = 200


def code_cache_problems(layer: Path) -> list[str]:
    """What is wrong with the layer's code cache: missing, of another interpreter's bytecode
    than the layer's ``.pyc`` files, unreadable, or nearly empty."""
    if str(REPO / "shared") not in sys.path:
        sys.path.insert(0, str(REPO / "shared"))
    from blog.codecache import FORMAT, decode  # noqa: PLC0415 - the layer's reader, any Python

    cache = layer / "blog" / "codecache.bin"
    if not cache.is_file():
        return ["SharedLayer: no python/blog/codecache.bin (lambda_build/record_code_cache.py)"]
    data = cache.read_bytes()
    pyc = next(layer.joinpath("blog").rglob(f"*.{PYC_TAG}.pyc"), None)
    magic = pyc.read_bytes()[:4] if pyc is not None else b""
    if not data.startswith(FORMAT + magic):
        return ["SharedLayer: blog/codecache.bin is not this layer's bytecode"]
    codes = decode(data[len(FORMAT) + len(magic) :])
    if codes is None:
        return ["SharedLayer: blog/codecache.bin cannot be read"]
    if (texts := len(codes)) < CODE_CACHE_MIN_TEXTS:
        return [f"SharedLayer: blog/codecache.bin holds {texts} texts, fewer than expected"]
    return []


def problems(build: Path = BUILD, arch: str = "aarch64") -> list[str]:
    """What is missing, superfluous, too big or built for the wrong architecture."""
    found: list[str] = []
    functions = sorted(p for p in build.glob("*Function") if p.is_dir())
    sources = sorted(p for p in (REPO / "functions").iterdir() if (p / "app.py").is_file())
    if len(functions) != len(sources) + 1:  # + MigrationsFunction
        found.append(f"{len(functions)} built functions for {len(sources)} functions/ + migrations")
    found += [f"{f.name}: no app.py" for f in functions if not (f / "app.py").is_file()]
    layer = build / "SharedLayer" / "python"
    # The CA bundles that template.yaml points DB_SSL_CA_FILE at (/opt/python/blog/certs/).
    certs = ("blog/certs/rds-ca-bundle.pem", "blog/certs/amazon-root-ca.pem")
    for need in ("blog/__init__.py", "pydantic_core", "sqlalchemy", "argon2", *certs):
        if not (layer / need).exists():
            found.append(f"SharedLayer: no python/{need}")
    for package in lazy_reexports():
        init = layer.joinpath(*package.split("."), "__init__.py")
        if not init.is_file() or LAZY_MARK not in init.read_text(encoding="utf-8"):
            found.append(f"SharedLayer: {package} not rewritten to import on first use")
    found += code_cache_problems(layer)
    migrations = build / "MigrationsFunction"
    scripts = [f"versions/{p.name}" for p in (REPO / "migrations" / "versions").glob("*.py")]
    for need in ("env.py", "script.py.mako", "alembic/__init__.py", *scripts):
        if not (migrations / need).is_file():
            found.append(f"MigrationsFunction: no {need}")
    for root in (layer, *functions):
        found += [f"{root.relative_to(build)}: {p}" for p in bytecode_problems(root)]
        found += [
            f"{root.relative_to(build)}: carries {name}, which the Lambda runtime provides"
            for name in RUNTIME_PROVIDED
            if (root / name).exists()
        ]
    if (size := _size(layer)) > LAYER_MAX_BYTES:
        limit = f"{LAYER_MAX_BYTES / 1e6:g} MB"
        found.append(f"SharedLayer: {size / 1e6:.1f} MB unzipped, over {limit}")
    deployed = [p for d in ("shared", "functions", "migrations") for p in (REPO / d).rglob("*.py")]
    found += [
        f"{p.relative_to(REPO)} calls {SWAGGER}), but the layer has no Swagger UI bundle"
        for p in deployed
        if SWAGGER in p.read_text(encoding="utf-8")
    ]
    extensions = sorted(build.rglob("*.so"))
    if not extensions:
        found.append("no compiled extension at all (pydantic-core has one)")
    for so in extensions:
        head = so.read_bytes()[:20]
        if head[:4] != b"\x7fELF" or int.from_bytes(head[18:20], "little") != EM_MACHINE[arch]:
            found.append(f"not an {arch} ELF: {so.relative_to(build)}")
    return found


def summary(build: Path = BUILD, arch: str = "aarch64") -> str:
    """Sizes and bytecode counts of what was built."""
    layer = build / "SharedLayer" / "python"
    biggest = sorted(((_size(p), p.name) for p in layer.iterdir() if p.is_dir()), reverse=True)
    functions = sorted(p for p in build.glob("*Function") if p.is_dir())
    migrations = build / "MigrationsFunction"
    handlers = [f for f in functions if f != migrations]
    pycs = {root: len(list(root.rglob(f"*.{PYC_TAG}.pyc"))) for root in (layer, *functions)}
    layer_size = _size(layer)
    return (
        f"sam build: {len(functions)} functions ({', '.join(f.name for f in functions)})\n"
        f"sam build: SharedLayer {_mib(layer_size)} = {layer_size / 1e6:.1f} MB unzipped"
        f" (limit {LAYER_MAX_BYTES / 1e6:g} MB), largest: "
        + ", ".join(f"{name} {_mib(size)}" for size, name in biggest[:4])
        + f"\nsam build: every .py compiled ({PYC_TAG}, unchecked-hash): SharedLayer"
        f" {pycs[layer]} .pyc, MigrationsFunction {pycs.get(migrations, 0)} .pyc"
        f" ({_mib(_size(migrations))}), {len(handlers)} functions"
        f" {sum(pycs[f] for f in handlers)} .pyc ({_mib(sum(map(_size, handlers)))});"
        f" {len(list(build.rglob('*.so')))} compiled extensions, all {arch}"
    )


def main(argv: list[str] | None = None) -> int:
    """Exit 1 with the problems, else print what was built."""
    parser = argparse.ArgumentParser(description="Check the built Lambda artifacts.")
    parser.add_argument("--build-dir", type=Path, default=BUILD, help="default: .aws-sam/build")
    parser.add_argument("--arch", choices=sorted(EM_MACHINE), default="aarch64")
    args = parser.parse_args(argv)
    build = args.build_dir.resolve()
    found = problems(build, args.arch)
    for problem in found:
        print(f"sam build check: {problem}", file=sys.stderr)  # noqa: T201
    if found:
        return 1
    print(summary(build, args.arch))  # noqa: T201
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
