"""Domain package of the Users & Posts API, shipped as the functions' shared Lambda layer.

In a Lambda execution environment the cyclic garbage collector is paused from the layer's first
import until the first invocation ends (:func:`end_cold_start`). The tens of thousands of objects
that the imports and the first call create (modules, classes, schemas, compiled statements) live
as long as the process: collecting while they are made only scans them again and again, a tenth
of a cold start. Then they are frozen, so later collections skip them, and the collector resumes.
Until then, too, the code that the imports compile from source text is read from the layer's
cache (:mod:`blog.codecache`).
"""

import gc as _gc
import os as _os

# Only where Lambda runs the code (Powertools' own test, LAMBDA_TASK_ROOT): tests, local tools
# and the migration function keep the collector as it is.
_paused = bool(_os.environ.get("LAMBDA_TASK_ROOT")) and _gc.isenabled()
if _paused:
    _gc.disable()

# There too, the code the imports compile from source text comes from the layer's cache (see
# blog.codecache) until the first invocation ends; CODE_CACHE=off turns that off, a path names
# another cache file.
_code_cache = _os.environ.get("CODE_CACHE", "")
_caching = False
if _os.environ.get("LAMBDA_TASK_ROOT") and _code_cache.lower() not in {"off", "false", "0"}:
    from blog import codecache as _codecache

    _caching = _codecache.start(_code_cache or _codecache.DEFAULT_PATH)


def end_cold_start() -> None:
    """Freeze what the cold start allocated and resume the collector, if it was paused, and stop
    compiling through the code cache, if it was used; once (later calls do nothing)."""
    global _paused, _caching  # noqa: PLW0603 - one flag each per process
    if _caching:
        _caching = False
        _codecache.stop()
    if _paused:
        _paused = False
        _gc.freeze()
        _gc.enable()
