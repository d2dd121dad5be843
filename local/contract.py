"""The breaking-change check: ``openapi.json`` against the last released contract.

The released contract is ``openapi-baseline.json`` (refreshed on release with ``--accept``), or
with ``--ref TAG`` the ``openapi.json`` of a git revision such as a release tag. A
change is breaking when a client written against the baseline may fail against the new document:

- ``operation-removed``, ``operation-id-changed`` (generated clients are named by the id);
- ``parameter-newly-required`` and ``property-newly-required`` (a request the client sends today
  would be refused), ``property-removed`` from a request body (our bodies refuse unknown fields);
- ``type-narrowed`` in a request (a type, enum value, bound, length or pattern the server took
  before and would refuse now);
- ``property-removed`` and ``property-no-longer-required`` in a response, ``type-widened`` in a
  response (a value the client cannot parse), ``status-removed``, ``header-removed``.

Each finding has a key, ``<operationId> <kind> <where>``, e.g.
``list_posts property-removed response.200.total``. A finding is accepted when the ``## Unreleased``
section of ``CHANGELOG.md`` declares it: a bullet under ``### Breaking`` whose first backticked
text is the key, or a shell-style pattern matching it (``list_posts *``). ``python -m
local.contract`` prints the findings, declared or not, and exits 1 when any is undeclared.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from local.functions import REPO

OPENAPI: Final = REPO / "openapi.json"
BASELINE: Final = REPO / "openapi-baseline.json"
CHANGELOG: Final = REPO / "CHANGELOG.md"
METHODS: Final = ("get", "put", "post", "patch", "delete", "head", "options")
#: Bounds that narrow what a request may carry when they go down (``max*``) or up (``min*``).
UPPER_BOUNDS: Final = ("maximum", "exclusiveMaximum", "maxLength", "maxItems", "maxProperties")
LOWER_BOUNDS: Final = ("minimum", "exclusiveMinimum", "minLength", "minItems", "minProperties")
_DECLARATION: Final = re.compile(r"^\s*[-*]\s+`([^`]+)`")
_MAX_DEPTH: Final = 32


@dataclass(frozen=True, order=True)
class Finding:
    """One breaking change: which operation, what kind, where in it."""

    operation: str
    kind: str
    where: str

    @property
    def key(self) -> str:
        """What a changelog entry declares: ``<operationId> <kind> <where>``."""
        return f"{self.operation} {self.kind} {self.where}"


class _Diff:
    """Walks two documents side by side and collects the findings."""

    def __init__(self, old: dict[str, Any], new: dict[str, Any]) -> None:
        self.old_doc, self.new_doc = old, new
        self.findings: list[Finding] = []
        self.operation = ""

    def add(self, kind: str, where: str) -> None:
        self.findings.append(Finding(self.operation, kind, where))

    def run(self) -> list[Finding]:
        new_ops = dict(_operations(self.new_doc))
        for key, old_op in _operations(self.old_doc):
            self.operation = str(old_op.get("operationId") or f"{key[0].upper()} {key[1]}")
            new_op = new_ops.get(key)
            if new_op is None:
                self.add("operation-removed", f"{key[0].upper()} {key[1]}")
                continue
            if new_op.get("operationId") != old_op.get("operationId"):
                self.add("operation-id-changed", str(new_op.get("operationId")))
            self._parameters(old_op, new_op)
            self._request_body(old_op, new_op)
            self._responses(old_op, new_op)
        return sorted(set(self.findings))

    def _parameters(self, old_op: dict[str, Any], new_op: dict[str, Any]) -> None:
        old = {_param_key(p): p for p in map(self._old, old_op.get("parameters", []))}
        for key, param in (
            (_param_key(p), p) for p in map(self._new, new_op.get("parameters", []))
        ):
            where = f"{key[0]}.{key[1]}"
            before = old.get(key)
            if param.get("required") and not (before and before.get("required")):
                self.add("parameter-newly-required", where)
            if before is not None:
                self._schema(before.get("schema", {}), param.get("schema", {}), where, request=True)

    def _request_body(self, old_op: dict[str, Any], new_op: dict[str, Any]) -> None:
        old_body = self._old(old_op.get("requestBody", {}))
        new_body = self._new(new_op.get("requestBody", {}))
        if new_body.get("required") and not old_body.get("required"):
            self.add("property-newly-required", "body")
        for media, content in new_body.get("content", {}).items():
            before = old_body.get("content", {}).get(media)
            if before is not None:
                self._schema(before.get("schema", {}), content.get("schema", {}), "body", True)

    def _responses(self, old_op: dict[str, Any], new_op: dict[str, Any]) -> None:
        new_responses = new_op.get("responses", {})
        for status, old_response in old_op.get("responses", {}).items():
            if status not in new_responses:
                self.add("status-removed", f"response.{status}")
                continue
            old, new = self._old(old_response), self._new(new_responses[status])
            for header in old.get("headers", {}):
                if header.lower() not in {h.lower() for h in new.get("headers", {})}:
                    self.add("header-removed", f"response.{status}.header.{header}")
            for media, content in old.get("content", {}).items():
                after = new.get("content", {}).get(media)
                where = f"response.{status}"
                if after is None:
                    self.add("type-widened", f"{where}.content.{media}")
                    continue
                self._schema(content.get("schema", {}), after.get("schema", {}), where, False)

    def _old(self, node: Any) -> Any:
        return _resolve(self.old_doc, node)

    def _new(self, node: Any) -> Any:
        return _resolve(self.new_doc, node)

    def _schema(self, old: Any, new: Any, where: str, request: bool, depth: int = 0) -> None:
        """Compare two schemas at ``where``; ``request`` says which way is breaking."""
        if depth > _MAX_DEPTH:
            return
        old, new = self._old(old), self._new(new)
        old_types, new_types = _types(self.old_doc, old), _types(self.new_doc, new)
        if request and old_types is not None and new_types is not None:
            if not old_types <= new_types:
                self.add("type-narrowed", where)
        elif not request and new_types is not None and (old_types is None or new_types - old_types):
            self.add("type-widened", where)
        old_enum, new_enum = old.get("enum"), new.get("enum")
        if request and new_enum is not None and not set(old_enum or []) <= set(new_enum):
            self.add("type-narrowed", where)
        if not request and old_enum is not None and set(new_enum or [None]) - set(old_enum):
            self.add("type-widened", where)
        if request:
            for old_variant, new_variant in _same_type_variants(
                self.old_doc, old, self.new_doc, new
            ):
                self._bounds(old_variant, new_variant, where)
        old_objects, new_objects = _objects(self.old_doc, old), _objects(self.new_doc, new)
        if len(old_objects) == 1 and new_objects and (not request or len(new_objects) == 1):
            # A response may now be any of several objects: each must keep what it promised.
            for new_object in new_objects:
                self._properties(old_objects[0], new_object, where, request, depth)
        old_items, new_items = _array_items(self.old_doc, old), _array_items(self.new_doc, new)
        if old_items is not None and new_items is not None:
            self._schema(old_items, new_items, f"{where}[]", request, depth + 1)

    def _bounds(self, old: dict[str, Any], new: dict[str, Any], where: str) -> None:
        for name in UPPER_BOUNDS:
            if name in new and (name not in old or new[name] < old[name]):
                self.add("type-narrowed", f"{where}.{name}")
        for name in LOWER_BOUNDS:
            if name in new and (name not in old or new[name] > old[name]):
                self.add("type-narrowed", f"{where}.{name}")
        if new.get("pattern") not in (None, old.get("pattern")):
            self.add("type-narrowed", f"{where}.pattern")

    def _properties(
        self,
        old: dict[str, Any],
        new: dict[str, Any],
        where: str,
        request: bool,
        depth: int,
    ) -> None:
        old_props, new_props = old.get("properties", {}), new.get("properties", {})
        old_required, new_required = set(old.get("required", [])), set(new.get("required", []))
        for name in sorted(old_props.keys() - new_props.keys()):
            self.add("property-removed", f"{where}.{name}")
        if request:
            for name in sorted(new_required - old_required):
                self.add("property-newly-required", f"{where}.{name}")
        else:
            for name in sorted((old_required - new_required) & new_props.keys()):
                self.add("property-no-longer-required", f"{where}.{name}")
        for name in sorted(old_props.keys() & new_props.keys()):
            self._schema(old_props[name], new_props[name], f"{where}.{name}", request, depth + 1)


def _operations(document: dict[str, Any]) -> Iterator[tuple[tuple[str, str], dict[str, Any]]]:
    for path, item in document.get("paths", {}).items():
        for method in METHODS:
            if method in item:
                yield (method, path), item[method]


def _param_key(param: dict[str, Any]) -> tuple[str, str]:
    name = str(param.get("name", ""))
    location = str(param.get("in", ""))
    return location, name.lower() if location == "header" else name


def _resolve(document: dict[str, Any], node: Any) -> Any:
    """``node`` with ``$ref`` followed (within the document)."""
    seen = 0
    while isinstance(node, dict) and "$ref" in node and seen < _MAX_DEPTH:
        target: Any = document
        for part in str(node["$ref"]).removeprefix("#/").split("/"):
            target = target.get(part.replace("~1", "/").replace("~0", "~"), {})
        node, seen = target, seen + 1
    return node


def _variants(document: dict[str, Any], schema: dict[str, Any]) -> list[dict[str, Any]]:
    """The alternatives of an ``anyOf``/``oneOf`` (resolved), or the schema itself."""
    options = schema.get("anyOf") or schema.get("oneOf")
    if not options:
        return [schema]
    found: list[dict[str, Any]] = []
    for option in options:
        found.extend(_variants(document, _resolve(document, option)))
    return found


def _same_type_variants(
    old_doc: dict[str, Any], old: dict[str, Any], new_doc: dict[str, Any], new: dict[str, Any]
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """The pairs of schemas whose bounds to compare: the two schemas themselves, and where
    either is an ``anyOf``/``oneOf``, each alternative with the other side's one of its type
    (``q: string | null`` whose string's ``minLength`` went up is narrowed)."""
    pairs = [(old, new)]
    if not any(key in schema for schema in (old, new) for key in ("anyOf", "oneOf")):
        return pairs
    old_by_type: dict[str, list[dict[str, Any]]] = {}
    for variant in _variants(old_doc, old):
        if isinstance(variant.get("type"), str):
            old_by_type.setdefault(variant["type"], []).append(variant)
    for variant in _variants(new_doc, new):
        kind = variant.get("type")
        same = old_by_type.get(kind, []) if isinstance(kind, str) else []
        if len(same) == 1:  # several of one type: no telling which became which
            pairs.append((same[0], variant))
    return pairs


def _types(document: dict[str, Any], schema: dict[str, Any]) -> frozenset[str] | None:
    """The JSON types ``schema`` admits (``integer`` counts as ``number`` too); None: any."""
    types: set[str] = set()
    for variant in _variants(document, schema):
        kind = variant.get("type")
        if kind is None:
            if "properties" in variant:
                kind = "object"
            elif "const" in variant or "enum" in variant:
                continue
            else:
                return None
        types.update([kind] if isinstance(kind, str) else kind)
    if "number" in types:
        types.add("integer")
    return frozenset(types)


def _objects(document: dict[str, Any], schema: dict[str, Any]) -> list[dict[str, Any]]:
    """The object alternatives of ``schema`` (itself, if it is one)."""
    return [v for v in _variants(document, schema) if "properties" in v]


def _array_items(document: dict[str, Any], schema: dict[str, Any]) -> Any:
    arrays = [v for v in _variants(document, schema) if v.get("type") == "array"]
    return arrays[0].get("items", {}) if len(arrays) == 1 else None


def breaking_changes(old: dict[str, Any], new: dict[str, Any]) -> list[Finding]:
    """Every change from ``old`` to ``new`` that may break a client of ``old``."""
    return _Diff(old, new).run()


def declared(changelog: str) -> list[str]:
    """The keys and patterns declared under ``### Breaking`` of ``## Unreleased``."""
    patterns: list[str] = []
    section = subsection = ""
    for line in changelog.splitlines():
        if line.startswith("## "):
            section, subsection = line[3:].strip().lower(), ""
        elif line.startswith("### "):
            subsection = line[4:].strip().lower()
        elif section == "unreleased" and subsection == "breaking":
            found = _DECLARATION.match(line)
            if found:
                patterns.append(found.group(1).strip())
    return patterns


def undeclared(findings: list[Finding], patterns: list[str]) -> list[Finding]:
    """The findings no pattern matches (``*`` and ``?`` are wildcards; ``[]`` is literal, as
    in the keys of array items)."""
    literal = [p.replace("[", "[[]") for p in patterns]
    return [f for f in findings if not any(fnmatch.fnmatchcase(f.key, p) for p in literal)]


def main(argv: list[str] | None = None) -> int:
    """Report breaking changes of openapi.json against the baseline; 1 if any is undeclared."""
    parser = argparse.ArgumentParser(prog="python -m local.contract", description=__doc__)
    parser.add_argument("--baseline", type=Path, default=BASELINE)
    parser.add_argument(
        "--ref", help="compare with openapi.json at this git revision instead (e.g. a release tag)"
    )
    parser.add_argument("--spec", type=Path, default=OPENAPI)
    parser.add_argument("--changelog", type=Path, default=CHANGELOG)
    parser.add_argument(
        "--accept", action="store_true", help="on release: make the spec the new baseline"
    )
    args = parser.parse_args(argv)
    if args.accept:
        shutil.copyfile(args.spec, args.baseline)
        return 0
    if args.ref:
        shown = subprocess.run(  # noqa: S603 - git with a revision given on our command line
            ["git", "show", f"{args.ref}:{OPENAPI.relative_to(REPO).as_posix()}"],  # noqa: S607
            cwd=REPO, capture_output=True, text=True, check=False,
        )  # fmt: skip
        if shown.returncode != 0:
            print(f"no openapi.json at {args.ref}: {shown.stderr.strip()}", file=sys.stderr)  # noqa: T201
            return 2
        old, args.baseline = json.loads(shown.stdout), Path(f"openapi.json@{args.ref}")
    else:
        old = json.loads(args.baseline.read_text())
    findings = breaking_changes(old, json.loads(args.spec.read_text()))
    patterns = declared(args.changelog.read_text() if args.changelog.exists() else "")
    missing = undeclared(findings, patterns)
    out = sys.stdout
    for finding in findings:
        state = "UNDECLARED" if finding in missing else "declared"
        print(f"{state:>10}  {finding.key}", file=out)  # noqa: T201
    if missing:
        print(  # noqa: T201
            f"\n{len(missing)} breaking change(s) of {args.spec.name} against "
            f"{args.baseline.name} are not declared. Fix them, or declare each under "
            "'## Unreleased' / '### Breaking' in CHANGELOG.md, e.g.:\n"
            + "\n".join(f"- `{f.key}` — why, and what clients do now" for f in missing),
            file=sys.stderr,
        )
        return 1
    print(f"{args.spec.name}: no undeclared breaking change against {args.baseline.name}")  # noqa: T201
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
