"""Find and load the Lambda functions of ``template.yaml`` in this process, as Lambda would."""

from __future__ import annotations

import importlib.util
import re
import sys
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
TEMPLATE = REPO / "template.yaml"


class _CfnLoader(yaml.SafeLoader):
    """A YAML loader that keeps CloudFormation's short tags (``!Ref``, ``!Sub``…) as plain data."""


def _tag(loader: _CfnLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    elif isinstance(node, yaml.MappingNode):
        value = loader.construct_mapping(node, deep=True)
    else:
        raise yaml.constructor.ConstructorError(None, None, f"unexpected node for !{suffix}")
    return {f"Fn::{suffix}" if suffix != "Ref" else "Ref": value}


_CfnLoader.add_multi_constructor("!", _tag)


@cache
def template() -> dict[str, Any]:
    """``template.yaml`` as data."""
    # What yaml.load(text, Loader=_CfnLoader) does, _CfnLoader being a SafeLoader.
    loader = _CfnLoader(TEMPLATE.read_text())
    try:
        loaded: dict[str, Any] = loader.get_single_data()
    finally:
        loader.dispose()
    return loaded


@dataclass(frozen=True)
class Function:
    """One ``AWS::Serverless::Function`` of the template."""

    logical_id: str
    code_dir: Path
    handler: str
    routes: tuple[tuple[str, str], ...] = field(default=())  # (METHOD, /path/{param})
    authorizer: str | None = None
    #: Seconds and MiB, as the template configures them (Lambda's defaults: 3 s, 128 MB).
    timeout: float = 3.0
    memory_mb: int = 128


def functions() -> dict[str, Function]:
    """Every function of the template by logical id, with its HTTP API routes."""
    found: dict[str, Function] = {}
    defaults = template().get("Globals", {}).get("Function", {})
    default_timeout = defaults.get("Timeout", 3)
    default_memory = defaults.get("MemorySize", 128)
    for logical_id, resource in template().get("Resources", {}).items():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        props = resource.get("Properties", {})
        routes: list[tuple[str, str]] = []
        authorizer = None
        for event in (props.get("Events") or {}).values():
            if event.get("Type") != "HttpApi":
                continue
            event_props = event.get("Properties", {})
            routes.append((str(event_props["Method"]).upper(), str(event_props["Path"])))
            auth = (event_props.get("Auth") or {}).get("Authorizer")
            authorizer = None if auth in (None, "NONE") else str(auth)
        found[logical_id] = Function(
            logical_id=logical_id,
            code_dir=REPO / str(props["CodeUri"]),
            handler=str(props.get("Handler", "app.lambda_handler")),
            routes=tuple(routes),
            authorizer=authorizer,
            timeout=float(props.get("Timeout", default_timeout)),
            memory_mb=int(props.get("MemorySize", default_memory)),
        )
    return found


def load_handler(function: Function) -> Any:
    """Import the function's module from its own folder (with the layer on the path)."""
    module = _load_module(function.code_dir, function.handler.rsplit(".", 1)[0])
    return getattr(module, function.handler.rsplit(".", 1)[1])


def load_module(function: Function) -> ModuleType:
    """The function's handler module."""
    return _load_module(function.code_dir, function.handler.rsplit(".", 1)[0])


def load_module_from(code_dir: Path, module: str = "app") -> ModuleType:
    """A function's handler module, by its folder (``functions/<name>``)."""
    return _load_module(code_dir, module)


@cache
def _load_module(code_dir: Path, module: str) -> ModuleType:
    try:
        where = code_dir.relative_to(REPO).as_posix()
    except ValueError:  # a function outside the repository (tests make some)
        where = code_dir.as_posix()
    name = "lambda_" + re.sub(r"\W", "_", where) + "_" + module
    spec = importlib.util.spec_from_file_location(name, code_dir / f"{module}.py")
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {code_dir / module}.py")
    loaded = importlib.util.module_from_spec(spec)
    sys.modules[name] = loaded
    spec.loader.exec_module(loaded)
    return loaded
