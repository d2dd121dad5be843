"""Check what ``sam build`` left in .aws-sam/build (``make sam-check`` runs it), print a summary.

The functions run on arm64 while CI builds on x86_64 without a container, so every compiled
extension must be an aarch64 ELF; the migration function must carry Alembic and its scripts.
Standard library only: it runs on the machine's python3, without .venv.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BUILD = REPO / ".aws-sam" / "build"
EM_AARCH64 = 183  # ELF e_machine


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def _mib(size: int) -> str:
    return f"{size / 2**20:.1f} MiB"


def problems() -> list[str]:
    """What is missing or built for the wrong architecture."""
    found: list[str] = []
    functions = sorted(p for p in BUILD.glob("*Function") if p.is_dir())
    sources = sorted(p for p in (REPO / "functions").iterdir() if (p / "app.py").is_file())
    if len(functions) != len(sources) + 1:  # + MigrationsFunction
        found.append(f"{len(functions)} built functions for {len(sources)} functions/ + migrations")
    found += [f"{f.name}: no app.py" for f in functions if not (f / "app.py").is_file()]
    layer = BUILD / "SharedLayer" / "python"
    for need in ("blog/__init__.py", "pydantic_core", "sqlalchemy", "argon2"):
        if not (layer / need).exists():
            found.append(f"SharedLayer: no python/{need}")
    migrations = BUILD / "MigrationsFunction"
    scripts = [f"versions/{p.name}" for p in (REPO / "migrations" / "versions").glob("*.py")]
    for need in ("env.py", "script.py.mako", "alembic/__init__.py", *scripts):
        if not (migrations / need).is_file():
            found.append(f"MigrationsFunction: no {need}")
    extensions = sorted(BUILD.rglob("*.so"))
    if not extensions:
        found.append("no compiled extension at all (pydantic-core has one)")
    for so in extensions:
        head = so.read_bytes()[:20]
        if head[:4] != b"\x7fELF" or int.from_bytes(head[18:20], "little") != EM_AARCH64:
            found.append(f"not an aarch64 ELF: {so.relative_to(BUILD)}")
    return found


def main() -> int:
    """Exit 1 with the problems, else print what was built."""
    found = problems()
    for problem in found:
        print(f"sam build check: {problem}", file=sys.stderr)  # noqa: T201
    if found:
        return 1
    layer = BUILD / "SharedLayer" / "python"
    biggest = sorted(((_size(p), p.name) for p in layer.iterdir() if p.is_dir()), reverse=True)
    functions = sorted(p.name for p in BUILD.glob("*Function") if p.is_dir())
    extensions = len(list(BUILD.rglob("*.so")))
    print(  # noqa: T201
        f"sam build: {len(functions)} functions ({', '.join(functions)})\n"
        f"sam build: SharedLayer {_mib(_size(layer))} unzipped, largest: "
        + ", ".join(f"{name} {_mib(size)}" for size, name in biggest[:4])
        + f"\nsam build: MigrationsFunction {_mib(_size(BUILD / 'MigrationsFunction'))} unzipped;"
        f" {extensions} compiled extensions, all aarch64"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
