"""The layer's lazy re-exports (lambda_build/lazy_reexports.py): Powertools' ``event_handler``
and ``data_classes`` packages, rewritten as the build does, export the same objects under the
same names, but a function that uses the HTTP API resolver loads only what that needs."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType
from typing import Any

import aws_lambda_powertools
import pytest

from tests.conftest import REPO

PACKAGES = ("aws_lambda_powertools.event_handler", "aws_lambda_powertools.utilities.data_classes")


def _tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "lazy_reexports", REPO / "lambda_build" / "lazy_reexports.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


lazy = _tool()

#: Prints, for each package, each exported name's defining module and qualified name, and what
#: was loaded by importing the HTTP API resolver alone.
PROBE = """
import importlib, json, sys
sys.path.insert(0, {root!r})
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
loaded = sorted(sys.modules)
app = APIGatewayHttpResolver()

@app.get("/ping")
def ping():
    return Response(200, "application/json", {{"ok": True}})

event = {{"version": "2.0", "routeKey": "GET /ping", "rawPath": "/ping", "rawQueryString": "",
         "headers": {{}}, "requestContext": {{"http": {{"method": "GET", "path": "/ping"}},
         "stage": "$default"}}, "isBase64Encoded": False}}
answer = app.resolve(event, None)
exported = {{}}
for name in {packages!r}:
    package = importlib.import_module(name)
    exported[name] = {{
        "all": sorted(package.__all__),
        "objects": {{n: f"{{getattr(package, n).__module__}}.{{getattr(package, n).__qualname__}}"
                    for n in package.__all__}},
        "dir": sorted(set(package.__all__) - set(dir(package))),
    }}
print(json.dumps({{"loaded": loaded, "status": answer["statusCode"], "body": answer["body"],
                  "exported": exported}}))
"""


def _probe(root: Path) -> dict[str, Any]:
    script = PROBE.format(root=str(root), packages=PACKAGES)
    done = subprocess.run(
        [sys.executable, "-I", "-c", script], capture_output=True, text=True, timeout=120,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@pytest.fixture(scope="module")
def rewritten(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the installed Powertools with both packages rewritten, as the layer's build
    does."""
    root = tmp_path_factory.mktemp("layer")
    shutil.copytree(
        Path(aws_lambda_powertools.__file__).parent, root / "aws_lambda_powertools",
        ignore=shutil.ignore_patterns("__pycache__"),
    )  # fmt: skip
    for package in PACKAGES:
        assert lazy.rewrite_package(root, package) > 0
    return root


def test_rewritten_packages_export_the_same_objects_and_load_only_what_is_used(
    rewritten: Path, tmp_path: Path
) -> None:
    # Given: the installed Powertools as it is, and the same rewritten
    original = _probe(tmp_path)  # nothing there: the installed package is imported
    lazy_one = _probe(rewritten)

    # Then: the same names denote the same objects, and dir() lists them all
    assert lazy_one["exported"] == original["exported"]
    assert all(not package["dir"] for package in lazy_one["exported"].values())
    # And: the resolver routes as before
    assert (lazy_one["status"], lazy_one["body"]) == (original["status"], original["body"]) == (
        200, '{"ok":true}'
    )  # fmt: skip
    # And: importing the HTTP API resolver loads no other resolver, no other event class and
    # no asyncio (AppSync's), where the original package loads them all
    unused = (
        "asyncio",
        "aws_lambda_powertools.event_handler.appsync",
        "aws_lambda_powertools.event_handler.bedrock_agent",
        "aws_lambda_powertools.utilities.data_classes.code_pipeline_job_event",
        "aws_lambda_powertools.utilities.data_classes.s3_event",
    )
    for module in unused:
        assert module in original["loaded"], module
        assert module not in lazy_one["loaded"], module
    assert len(lazy_one["loaded"]) < len(original["loaded"])


def test_a_rewritten_package_refuses_unknown_names_and_is_rewritten_once(
    rewritten: Path,
) -> None:
    # Given: a package already rewritten
    init = rewritten / "aws_lambda_powertools" / "event_handler" / "__init__.py"
    before = init.read_text()

    # When: the build runs again on the same folder
    again = lazy.rewrite_package(rewritten, PACKAGES[0])

    # Then: nothing changes
    assert again == 0
    assert init.read_text() == before
    # And: an unknown name is an AttributeError, as on any module
    script = f"""
import sys
sys.path.insert(0, {str(rewritten)!r})
import aws_lambda_powertools.event_handler as handler
try:
    handler.NoSuchResolver
except AttributeError as error:
    print(error)
"""
    done = subprocess.run(
        [sys.executable, "-I", "-c", script], capture_output=True, text=True, check=True
    )
    assert "has no attribute 'NoSuchResolver'" in done.stdout


@pytest.mark.parametrize(
    ("source", "refusal"),
    [
        ('"""Doc."""\nfrom .a import A\nsetup_logging()\n', "line 3 is not a re-export"),
        ("from .a import *\n", "star import"),
        ("from .a import A\nfrom .b import B as A\n", "A is imported twice"),
        ('from .a import A\n__all__ = ["A", "B"]\n', "['B'] it never imports"),
        ("from .a import A\nif True:\n    from .b import B\n", "line 2 is not a re-export"),
        ('"""Only a docstring."""\n', "nothing to re-export"),
    ],
)
def test_an_init_that_does_more_than_re_export_is_refused(source: str, refusal: str) -> None:
    # When / Then: the build stops rather than drop what the statement does
    with pytest.raises(lazy.NotReexportsOnly, match=re.escape(refusal)):
        lazy.rewrite(source, "pkg")


def test_relative_and_absolute_sources_resolve_to_the_defining_module() -> None:
    # Given: an __init__ with a docstring, relative, parent-relative and absolute imports
    source = textwrap.dedent('''\
        """Doc."""
        from .one import First
        from ..sibling.two import Second as Alias
        from pkg.sub.three import Third
        __all__ = ["First", "Alias", "Third"]
        ''')

    # When
    text, deferred = lazy.rewrite(source, "pkg.sub")
    namespace: dict[str, Any] = {}
    exec(compile(text, "rewritten", "exec"), namespace)  # noqa: S102 - the generated module

    # Then
    assert deferred == 3
    assert namespace["__doc__"] == "Doc."
    assert namespace["__all__"] == ["First", "Alias", "Third"]
    assert namespace["_SOURCES"] == {
        "Alias": ("pkg.sibling.two", "Second"),
        "First": ("pkg.sub.one", "First"),
        "Third": ("pkg.sub.three", "Third"),
    }


def test_the_layer_build_rewrites_what_the_build_check_expects() -> None:
    # The Makefile's list is what local/sam_build_check.py verifies in every build.
    sys.path.insert(0, str(REPO))
    try:
        from local.sam_build_check import lazy_reexports
    finally:
        sys.path.remove(str(REPO))
    assert lazy_reexports() == list(PACKAGES)
    makefile = (REPO / "lambda_build" / "Makefile").read_text()
    recipe = makefile.split("build-SharedLayer:", 1)[1].split("\n\n", 1)[0]
    assert "lazy_reexports.py" in recipe and "$(LAZY_REEXPORTS)" in recipe


def test_the_build_step_runs_again_on_a_folder_it_already_rewrote(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given: a build folder the step rewrote once
    shutil.copytree(
        Path(aws_lambda_powertools.__file__).parent, tmp_path / "aws_lambda_powertools",
        ignore=shutil.ignore_patterns("__pycache__"),
    )  # fmt: skip
    assert lazy.main([str(tmp_path), *PACKAGES]) == 0
    first = capsys.readouterr().out
    init = tmp_path / "aws_lambda_powertools" / "event_handler" / "__init__.py"
    rewritten = init.read_text()

    # When: the build runs the step on it again
    again = lazy.main([str(tmp_path), *PACKAGES])

    # Then: it succeeds and leaves the files as they are
    assert again == 0
    assert init.read_text() == rewritten
    assert re.search(r"event_handler: [1-9][0-9]* names imported on first use", first)
    assert "0 names imported on first use" in capsys.readouterr().out
