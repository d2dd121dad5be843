"""The layer's and the migration function's requirements stay generated from the lock file."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PIN = re.compile(r"^([A-Za-z0-9._-]+)==([^\s;\\]+)", re.MULTILINE)


def _pins(path: Path) -> dict[str, str]:
    return {
        name.lower().replace("_", "-"): version for name, version in PIN.findall(path.read_text())
    }


def _requirement_names(specs: list[str]) -> set[str]:
    return {re.split(r"[\[<>=!~ ;]", spec, maxsplit=1)[0].lower() for spec in specs}


@pytest.mark.parametrize("generated", ["shared/requirements.txt", "migrations/requirements.txt"])
def test_generated_requirements_pin_the_same_versions_as_the_lock(generated: str) -> None:
    lock = _pins(REPO / "requirements.lock")
    pins = _pins(REPO / generated)
    assert pins, f"{generated} pins nothing"
    drifted = {name: (v, lock.get(name)) for name, v in pins.items() if lock.get(name) != v}
    assert not drifted, f"{generated} drifted from requirements.lock (run `make lock`): {drifted}"


def test_layer_requirements_cover_exactly_the_runtime_dependencies() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    runtime = _requirement_names(project["dependencies"])
    layer = set(_pins(REPO / "shared/requirements.txt"))
    assert runtime <= layer, f"missing from the layer: {runtime - layer}"
    dev_only = _requirement_names(project["optional-dependencies"]["dev"]) - runtime
    assert not (dev_only & layer), f"test tools in the layer: {dev_only & layer}"


def test_layer_leaves_the_aws_sdk_to_the_lambda_runtime() -> None:
    layer = set(_pins(REPO / "shared/requirements.txt"))
    assert not (layer & {"boto3", "botocore", "s3transfer"}), "the runtime provides the AWS SDK"
