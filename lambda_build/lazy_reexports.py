"""Rewrite a package's ``__init__.py`` that only re-exports names into one that imports each name
on first use (PEP 562 module ``__getattr__``), in a build's copy of the package.

``python lazy_reexports.py DIR PACKAGE...``: for each dotted PACKAGE under DIR.

Why: importing any module of a package runs its ``__init__`` first. Powertools'
``aws_lambda_powertools.event_handler`` re-exports every resolver it has (AppSync, which imports
``asyncio``; Bedrock; VPC Lattice; ...) and ``aws_lambda_powertools.utilities.data_classes``
every event class it has (CodePipeline, which imports ``zipfile``; ALB; ...), so a function that
uses the HTTP API resolver alone loads them all: tens of milliseconds of each cold start. Rewritten,
``from aws_lambda_powertools.event_handler import APIGatewayHttpResolver`` imports
``event_handler.api_gateway`` and what it needs, nothing else; the names, the objects they
denote and ``__all__`` are the same, and ``dir()`` lists them.

Only an ``__init__`` made of nothing but a docstring, ``from ... import name [as alias]``
statements and an ``__all__`` of string literals is rewritten; anything else (a statement with a
side effect, a star import, a name imported twice) stops the build, so a new release of the
package that changes its ``__init__`` is never rewritten into something else.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

MARK = "# Rewritten at build time by lambda_build/lazy_reexports.py"

TEMPLATE = """{docstring}
{mark}: each name below is imported on its
# first use (PEP 562), not when the package is. The package's own __init__.py re-exports them.

import importlib as _importlib

__all__ = {all_names!r}

_SOURCES = {sources!r}


def __getattr__(name):
    try:
        module, attribute = _SOURCES[name]
    except KeyError:
        raise AttributeError(f"module {{__name__!r}} has no attribute {{name!r}}") from None
    value = getattr(_importlib.import_module(module), attribute)
    globals()[name] = value
    return value


def __dir__():
    return sorted({{*globals(), *_SOURCES}})
"""


class NotReexportsOnly(ValueError):
    """The ``__init__`` does more than re-export names: it is left as it is and the build stops."""


def _module_of(node: ast.ImportFrom, package: str) -> str:
    if node.level == 0:
        if node.module is None:  # pragma: no cover - not valid Python
            raise NotReexportsOnly("from-import without a module")
        return node.module
    base = package.split(".")
    if node.level > 1:
        base = base[: -(node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def rewrite(source: str, package: str) -> tuple[str, int]:
    """The lazy ``__init__`` for ``package`` whose ``__init__`` is ``source``, and how many
    names it defers."""
    tree = ast.parse(source)
    docstring = ast.get_docstring(tree, clean=False)
    sources: dict[str, tuple[str, str]] = {}
    all_names: list[str] | None = None
    for index, statement in enumerate(tree.body):
        if index == 0 and docstring is not None:
            continue
        if isinstance(statement, ast.ImportFrom):
            module = _module_of(statement, package)
            for alias in statement.names:
                if alias.name == "*":
                    raise NotReexportsOnly(f"{package}: star import from {module}")
                name = alias.asname or alias.name
                if name in sources:
                    raise NotReexportsOnly(f"{package}: {name} is imported twice")
                sources[name] = (module, alias.name)
            continue
        if (
            isinstance(statement, ast.Assign)
            and len(statement.targets) == 1
            and isinstance(statement.targets[0], ast.Name)
            and statement.targets[0].id == "__all__"
            and isinstance(statement.value, ast.List | ast.Tuple)
            and all(
                isinstance(item, ast.Constant) and isinstance(item.value, str)
                for item in statement.value.elts
            )
        ):
            all_names = [item.value for item in statement.value.elts]  # type: ignore[attr-defined]
            continue
        raise NotReexportsOnly(
            f"{package}: line {statement.lineno} is not a re-export ({type(statement).__name__})"
        )
    if not sources:
        raise NotReexportsOnly(f"{package}: nothing to re-export")
    if all_names is not None and (missing := set(all_names) - set(sources)):
        raise NotReexportsOnly(f"{package}: __all__ names {sorted(missing)} it never imports")
    text = TEMPLATE.format(
        docstring=repr(docstring) if docstring is not None else "",
        mark=MARK,
        all_names=all_names if all_names is not None else sorted(sources),
        sources=dict(sorted(sources.items())),
    )
    return text, len(sources)


def plan(directory: Path, package: str) -> tuple[Path, str, int] | None:
    """What rewriting ``package``'s ``__init__.py`` under ``directory`` writes: its path, its
    new text and the number of names it defers; ``None`` when it is rewritten already (a build
    folder built again)."""
    path = directory.joinpath(*package.split("."), "__init__.py")
    source = path.read_text(encoding="utf-8")
    if MARK in source:
        return None
    rewritten, deferred = rewrite(source, package)
    return path, rewritten, deferred


def rewrite_package(directory: Path, package: str) -> int:
    """Rewrite ``package``'s ``__init__.py`` under ``directory``; the number of names it defers."""
    planned = plan(directory, package)
    if planned is None:
        return 0
    path, rewritten, deferred = planned
    path.write_text(rewritten, encoding="utf-8")
    return deferred


def main(argv: list[str]) -> int:
    """Rewrite each package named on the command line; 1 (and nothing written) on any refusal."""
    if len(argv) < 2:  # noqa: PLR2004 - DIR and at least one package
        sys.stderr.write(__doc__.split("\n\n")[1] + "\n")
        return 2
    directory = Path(argv[0])
    planned: dict[str, tuple[Path, str, int] | None] = {}
    for package in argv[1:]:
        try:
            planned[package] = plan(directory, package)
        except (OSError, NotReexportsOnly) as error:
            sys.stderr.write(f"lazy_reexports: {error}\n")
            return 1
    for package, rewrite_of in planned.items():
        deferred = 0
        if rewrite_of is not None:
            path, rewritten, deferred = rewrite_of
            path.write_text(rewritten, encoding="utf-8")
        sys.stdout.write(f"lazy_reexports: {package}: {deferred} names imported on first use\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
