"""The digest of the migration scripts that ``template.yaml`` passes to the migration resource.

``python -m local.migrations_digest`` rewrites it in the template; a test fails when it is stale.
"""

from __future__ import annotations

import hashlib
import re
import sys

from local.functions import REPO, TEMPLATE

DIGEST_LINE = re.compile(r"(ScriptsDigest: )sha256:[0-9a-f]{64}")


def digest() -> str:
    """sha256 over the names and contents of env.py and every revision, in a stable order."""
    files = [
        REPO / "migrations" / "env.py",
        *sorted((REPO / "migrations" / "versions").glob("*.py")),
    ]
    hasher = hashlib.sha256()
    for path in files:
        hasher.update(path.relative_to(REPO).as_posix().encode() + b"\0")
        hasher.update(path.read_bytes() + b"\0")
    return f"sha256:{hasher.hexdigest()}"


def main() -> int:
    """Write the current digest into template.yaml."""
    text = TEMPLATE.read_text()
    updated, count = DIGEST_LINE.subn(lambda m: m.group(1) + digest(), text)
    if count != 1:
        print("template.yaml has no single ScriptsDigest line", file=sys.stderr)  # noqa: T201
        return 1
    TEMPLATE.write_text(updated)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
