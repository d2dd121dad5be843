"""The template as CloudFormation receives it, after SAM's transform (``local/sam_transform.py``).

The translator lives in the SAM CLI's own virtual environment (``.venv-sam``, which ``make test``
installs): it pins versions that clash with the project's lock, so it runs as a subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def sam_python() -> Path:
    """The SAM CLI venv's interpreter (``SAM_PYTHON`` overrides)."""
    path = Path(os.environ.get("SAM_PYTHON") or REPO / ".venv-sam" / "bin" / "python")
    if not path.is_file():
        raise RuntimeError(f"{path} is missing: `make test` installs the SAM CLI venv first")
    return path


@cache
def _transformed(parameters: tuple[tuple[str, str], ...], layer_build: str = "") -> str:
    args = [f"--layer-build={layer_build}"] if layer_build else []
    args += [f"{name}={value}" for name, value in parameters]
    result = subprocess.run(  # noqa: S603 - our own interpreter and script
        [str(sam_python()), str(REPO / "local" / "sam_transform.py"), *args],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        env={**os.environ, "AWS_DEFAULT_REGION": "eu-west-1"},
    )
    return result.stdout


def transformed(parameters: dict[str, str], *, layer_build: str = "") -> dict[str, Any]:
    """The transformed template for ``parameters`` (a fresh copy each call); ``layer_build``
    names another build of the shared layer, as a deployment that changed only ``shared/``."""
    loaded: dict[str, Any] = json.loads(
        _transformed(tuple(sorted(parameters.items())), layer_build)
    )
    return loaded
