"""Record the code a cold start compiles from source text, for the layer's code cache.

    python3.13 record_code_cache.py LAYER_PYTHON_DIR FUNCTIONS_DIR OUTPUT [--import-path DIR]...
        [--only FOLDER]...

Imports every function's handler (``FUNCTIONS_DIR/*/app.py``) in a fresh interpreter, as Lambda
does at a cold start, with the layer's ``blog.codecache`` recording what the imports compile,
and writes the union to ``OUTPUT`` (``blog/codecache.bin`` of the layer; see that module). It
must run under the functions' Python version, whose bytecode the cache holds; the cache is
independent of the architecture, so a layer built for another one is recorded with the same
packages installed for this machine (``--import-path``, then used instead of the layer folder
for the imports; given more than once, in that order). ``--only`` records those functions'
folders alone (tests). Standard library only. Nothing is connected to: the imports need no database,
no AWS credentials and no network.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

#: Run in each child: record, import the handler, save what was recorded as a cache file.
CHILD = """
import json, sys
sys.path[:0] = [sys.argv[2], *json.loads(sys.argv[3])]
from blog import codecache
codecache.record()
import app
codecache.save(codecache.recorded(), sys.argv[1])
"""

#: The environment of a function on Lambda as far as the imports read it (no credentials: they
#: must not be needed to import).
ENVIRONMENT = {
    "LANG": "C.UTF-8",
    "TZ": ":UTC",
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_LAMBDA_FUNCTION_NAME": "record-code-cache",
    "POWERTOOLS_SERVICE_NAME": "blog-api",
    "PYDANTIC_DISABLE_PLUGINS": "__all__",
    "CODE_CACHE": "off",  # record from nothing, whatever the layer holds
}


def record(functions: Path, paths: list[Path], only: list[str] | None = None) -> dict[bytes, bytes]:
    """The union of what the functions' imports compile (with ``paths`` after the function's
    folder on ``sys.path``), by key."""
    from blog import codecache  # noqa: PLC0415 - the layer's, from the path main() set

    found: dict[bytes, bytes] = {}
    folders = sorted(
        p.parent for p in functions.glob("*/app.py") if not only or p.parent.name in only
    )
    if not folders:
        raise SystemExit(f"no functions in {functions}")
    with tempfile.TemporaryDirectory(prefix="record-code-cache-") as scratch:
        for folder in folders:
            out = Path(scratch) / f"{folder.name}.bin"
            env = {**ENVIRONMENT, "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
            env["LAMBDA_TASK_ROOT"] = str(folder)
            done = subprocess.run(
                [sys.executable, "-I", "-S", "-B", "-c", CHILD, str(out), str(folder),
                 json.dumps([str(path) for path in paths])],
                env=env, cwd=scratch, capture_output=True, text=True, timeout=300, check=False,
            )  # fmt: skip
            if done.returncode != 0:
                raise SystemExit(f"importing {folder.name} failed:\n{done.stderr[-3000:]}")
            codes = codecache.read(str(out))
            if codes is None:
                raise SystemExit(f"importing {folder.name} recorded no readable cache")
            found.update(codes)
    return found


def main() -> int:
    """Record and write the cache."""
    parser = argparse.ArgumentParser(prog="record_code_cache.py")
    parser.add_argument("layer", type=Path, help="the layer's python/ folder (holds blog/)")
    parser.add_argument("functions", type=Path, help="the folder of the functions' folders")
    parser.add_argument("output", type=Path)
    parser.add_argument(
        "--import-path", type=Path, action="append", help="the packages for this machine"
    )
    parser.add_argument("--only", action="append", help="a function's folder name")
    args = parser.parse_args()
    paths: list[Path] = [path.resolve() for path in args.import_path or [args.layer]]
    sys.path[:0] = [str(path) for path in paths]
    from blog import codecache  # noqa: PLC0415 - the layer's, from the path above

    codes = record(args.functions.resolve(), paths, args.only)
    codecache.save(codes, str(args.output))
    size = args.output.stat().st_size
    sys.stdout.write(f"code cache: {len(codes)} compiled texts, {size} bytes\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
