"""Local tooling, never deployed: the gateway emulation, the embedded PostgreSQL, OpenAPI.

The layer (``shared/``) is put on ``sys.path`` here, as Lambda puts a layer's code under ``/opt``.
"""

import sys
from pathlib import Path

_SHARED = str(Path(__file__).resolve().parent.parent / "shared")
if _SHARED not in sys.path:
    sys.path.insert(0, _SHARED)
