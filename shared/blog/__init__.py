"""Domain package of the Users & Posts API, shipped as the functions' shared Lambda layer."""

import gc as _gc
from importlib import import_module as _import_module

#: What every function imports, and what allocates most of a process's long-lived objects.
_DEPENDENCIES = (
    "sqlalchemy.dialects.postgresql.pg8000",
    "pg8000.dbapi",
    "pydantic.main",
    "aws_lambda_powertools.event_handler",
)


def _import_dependencies() -> None:
    """Import the heavy dependencies with the cyclic garbage collector paused, then freeze them.

    Their tens of thousands of module-level objects live as long as the process; collecting while
    they are created only scans them again and again (a tenth of a cold start's imports), and
    every later full collection would scan them once more. Frozen, collections skip them.
    """
    enabled = _gc.isenabled()
    _gc.disable()
    try:
        for name in _DEPENDENCIES:
            _import_module(name)
    finally:
        _gc.freeze()
        if enabled:
            _gc.enable()


_import_dependencies()
