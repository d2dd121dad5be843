"""The digest of the migration scripts that ``template.yaml`` passes to the migration resource.

``python -m local.migrations_digest`` rewrites it in the template and in the sample custom
resource events (so ``python -m local invoke MigrationsFunction`` with them is a real update,
not a rollback); a test fails when either is stale. The algorithm lives with the migration
function, which computes the same digest of the scripts it was packaged with.
"""

from __future__ import annotations

import json
import re
import sys

from local.functions import REPO, TEMPLATE, load_module_from

DIGEST_LINE = re.compile(r"(ScriptsDigest: )sha256:[0-9a-f]{64}")
EVENTS = ("migrations_create.json", "migrations_update.json", "migrations_delete.json")


def digest() -> str:
    """sha256 over the names and contents of env.py and every revision, in a stable order."""
    digest_of: str = load_module_from(REPO / "migrations").scripts_digest(REPO / "migrations")
    return digest_of


def main() -> int:
    """Write the current digest into template.yaml and the sample custom resource events."""
    current = digest()
    text = TEMPLATE.read_text()
    updated, count = DIGEST_LINE.subn(lambda m: m.group(1) + current, text)
    if count != 1:
        print("template.yaml has no single ScriptsDigest line", file=sys.stderr)  # noqa: T201
        return 1
    TEMPLATE.write_text(updated)
    for name in EVENTS:
        path = REPO / "events" / name
        event = json.loads(path.read_text())
        event["ResourceProperties"]["ScriptsDigest"] = current
        path.write_text(json.dumps(event, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
