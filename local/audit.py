"""pip-audit of a hash-locked requirements file, which says plainly what it could not audit.

pip-audit looks every pinned package up in PyPI's vulnerability data (its JSON API). A package it
cannot look up is only a "skip" in its report, so a machine without a route to that API would
pass with nothing audited. Here the skips are counted: known vulnerabilities fail the run; a
package left unaudited is reported, and fails the run when ``AUDIT_REQUIRED=1`` (set it where
PyPI's API is reachable, e.g. in a deployment pipeline).

Usage: ``python local/audit.py requirements.lock``
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any


def audit(lock: str) -> dict[str, Any]:
    """pip-audit's JSON report on ``lock`` (its exit status is read from the report instead)."""
    command = [sys.executable, "-m", "pip_audit", "--requirement", lock, "--disable-pip",
               "--require-hashes", "--format", "json", "--progress-spinner", "off"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
    try:
        report: dict[str, Any] = json.loads(done.stdout)
    except json.JSONDecodeError:
        sys.stderr.write(done.stderr)
        raise SystemExit(f"pip-audit failed (exit {done.returncode})") from None
    return report


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    report = audit(argv[0])
    packages = report.get("dependencies", [])
    vulnerable = [p for p in packages if p.get("vulns")]
    skipped = [p for p in packages if p.get("skip_reason")]
    for package in vulnerable:
        for vuln in package["vulns"]:
            fixed = ", ".join(vuln.get("fix_versions") or []) or "no fix yet"
            print(f"{package['name']} {package['version']}: {vuln['id']} (fixed in {fixed})")
    audited = len(packages) - len(skipped)
    print(
        f"pip-audit {argv[0]}: {audited} of {len(packages)} packages audited, "
        f"{sum(len(p['vulns']) for p in vulnerable)} known vulnerabilities"
    )
    if skipped:
        reasons = sorted({p["skip_reason"].split(":")[0] for p in skipped})
        print(f"  not audited: {len(skipped)} ({'; '.join(reasons)})")
    if vulnerable:
        return 1
    if skipped and os.environ.get("AUDIT_REQUIRED") == "1":
        print("  AUDIT_REQUIRED=1: every package must be audited", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
