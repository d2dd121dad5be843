"""The template CloudFormation receives: ``template.yaml`` through SAM's own transform.

Runs with the SAM CLI's interpreter, which has the translator (``aws-sam-translator`` pins versions
that clash with the project's): ``.venv-sam/bin/python local/sam_transform.py [Name=Value ...]``
prints the transformed template as JSON, for the given parameter values (the transform resolves
a few of them itself, e.g. the deployment type). Code locations become placeholder S3 URIs, as
``sam package`` would make them.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

TEMPLATE = Path(__file__).resolve().parent.parent / "template.yaml"
CODE_PROPERTIES = {
    "AWS::Serverless::Function": "CodeUri",
    "AWS::Serverless::LayerVersion": "ContentUri",
}


class _NoManagedPolicies:
    """The translator asks IAM for managed policy ARNs only for policies named by name: none."""

    def load(self) -> dict[str, str]:
        return {}


def transformed(parameters: dict[str, str], *, layer_build: str = "") -> dict[str, Any]:
    """The transformed template for ``parameters`` (missing ones take their defaults).

    ``layer_build`` names another build of the shared layer (another S3 key), as a deployment
    that changed only ``shared/`` would upload."""
    os.environ.setdefault("AWS_DEFAULT_REGION", "eu-west-1")
    from samtranslator.translator.transform import transform  # type: ignore[import-untyped,import-not-found,unused-ignore]
    from samtranslator.yaml_helper import yaml_parse  # type: ignore[import-untyped,import-not-found,unused-ignore]

    template: dict[str, Any] = yaml_parse(TEMPLATE.read_text())
    for name, resource in template["Resources"].items():
        key = CODE_PROPERTIES.get(resource["Type"])
        if key:
            suffix = f"-{layer_build}" if layer_build and key == "ContentUri" else ""
            resource["Properties"][key] = f"s3://artifacts/{name}{suffix}.zip"
    result: dict[str, Any] = transform(template, parameters, _NoManagedPolicies())
    return result


def main(argv: list[str]) -> int:
    """Print the transformed template for ``Name=Value`` arguments (``--layer-build=B`` first,
    optionally, for another build of the shared layer)."""
    layer_build = ""
    if argv and argv[0].startswith("--layer-build="):
        layer_build = argv.pop(0).split("=", 1)[1]
    parameters = dict(arg.split("=", 1) for arg in argv)
    json.dump(transformed(parameters, layer_build=layer_build), sys.stdout, indent=1, default=str)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
