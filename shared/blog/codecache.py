"""The code a cold start compiles from source text, read from a cache built with the layer.

Importing a handler runs the compiler on source text that the imports generate, not only on the
modules' own (which come compiled, as ``.pyc``): ``dataclasses`` executes the text of every
dataclass's methods, ``typing.ForwardRef`` compiles every string annotation it is given, and
``collections.namedtuple`` evaluates every tuple type's ``__new__``. For a database function
that is about 800 calls and a tenth of the import (pydantic's, annotated-types' and the layer's
dataclasses, pydantic-core's annotations). The text depends on the code imported, never on the
process, so the layer's build runs every function's import once, records what was compiled
(:func:`record`, :func:`save`; ``lambda_build/record_code_cache.py``) and ships the code objects
beside this module (``codecache.bin``); a cold start then loads them instead of parsing and
compiling the same text again.

While a cold start lasts (:func:`start` in the layer's first import, :func:`stop` when the first
invocation ends) the three modules' names ``exec``, ``compile`` and ``eval`` resolve to the
functions below instead of the built-ins. Each looks the text up by a digest of everything the
built-in's result depends on (the text, file name, mode, compiler flags including the future
features inherited from the caller, optimization level), and falls back to the built-in on a
miss. A hit is the code object the built-in compiles from the same input, so nothing behaves
differently; a cache written by another interpreter (its bytecode magic number) or unreadable is
not used at all. After :func:`stop` the modules use the built-ins again, and the cache is freed.
"""

from __future__ import annotations
import __future__

import builtins
import marshal
import os
import sys
import zlib
from _frozen_importlib_external import MAGIC_NUMBER
from hashlib import blake2b
from typing import Any, Final

#: The file's first bytes: this format, then the bytecode magic number of the interpreter that
#: compiled the code (:data:`HEADER`), then the codes (:func:`decode`).
FORMAT: Final = b"blog-code-cache-1\n"
HEADER: Final = FORMAT + MAGIC_NUMBER
#: Where the layer's build puts the cache: beside this module.
DEFAULT_PATH: Final = os.path.join(os.path.dirname(__file__), "codecache.bin")

#: The future features a caller's code passes on to what it compiles (what the built-ins read
#: from the calling frame when ``dont_inherit`` is false).
_FUTURE_FLAGS: Final[int] = (
    sum(getattr(__future__, name).compiler_flag for name in __future__.all_feature_names)
    & ~0x0010  # but nested scopes' (CO_NESTED), a flag of every nested function's code
)
#: Code flags of a function's frame, whose locals are a snapshot for exec and eval.
_CO_OPTIMIZED: Final = 0x0001

_codes: dict[bytes, bytes] = {}
_recorded: dict[bytes, bytes] | None = None
_counts = {"hits": 0, "misses": 0}
_installed: list[tuple[Any, str, Any]] = []


def _key(source: str, filename: str, mode: str, flags: int, optimize: int) -> bytes:
    parts = (mode, str(flags), str(optimize), filename, source)
    text = "\0".join(parts).encode("utf-8", "surrogatepass")
    return blake2b(text, digest_size=16).digest()


def _code(source: str, filename: str, mode: str, flags: int, optimize: int) -> Any:
    """``compile(source, filename, mode, flags, dont_inherit=True, optimize)``, from the cache
    when it holds it."""
    if optimize == -1:
        optimize = sys.flags.optimize
    key = _key(source, filename, mode, flags, optimize)
    blob = _codes.get(key)
    if blob is not None:
        _counts["hits"] += 1
        # The layer's own code, read from its file (see read()).
        return marshal.loads(blob)  # nosec B302
    _counts["misses"] += 1
    code = builtins.compile(source, filename, mode, flags, True, optimize)
    if _recorded is not None:
        _recorded[key] = marshal.dumps(code)
    return code


def _inherited(depth: int = 2) -> int:
    """The future features of the code that called the caller of this function."""
    flags: int = sys._getframe(depth).f_code.co_flags
    return flags & _FUTURE_FLAGS


def _scopes(globals_: Any, locals_: Any) -> tuple[Any, Any]:
    """The namespaces exec and eval use when given none: the calling frame's (two up)."""
    if globals_ is None:
        frame = sys._getframe(2)
        globals_ = frame.f_globals
        if locals_ is None:
            optimized = frame.f_code.co_flags & _CO_OPTIMIZED
            locals_ = dict(frame.f_locals) if optimized else frame.f_locals
    return globals_, locals_


def cached_compile(  # noqa: PLR0917 - the built-in's signature
    source: Any,
    filename: Any,
    mode: str,
    flags: int = 0,
    dont_inherit: bool = False,  # noqa: FBT001, FBT002 - the built-in's signature
    optimize: int = -1,
    **kwargs: Any,
) -> Any:
    """The built-in ``compile``, its result taken from the cache for source text."""
    if not dont_inherit:
        flags |= _inherited()
    if type(source) is str and not kwargs and not flags & ~_FUTURE_FLAGS:
        return _code(source, os.fsdecode(filename), mode, flags, optimize)
    return builtins.compile(source, filename, mode, flags, True, optimize, **kwargs)


def _namespaces(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, Any]:
    """``globals`` and ``locals`` as the built-ins take them: by position, or (3.13) by name."""
    globals_ = args[0] if args else kwargs.pop("globals", None)
    locals_ = args[1] if len(args) > 1 else kwargs.pop("locals", None)
    return globals_, locals_


def cached_exec(source: Any, /, *args: Any, **kwargs: Any) -> None:
    """The built-in ``exec``, with source text compiled through the cache."""
    globals_, locals_ = _namespaces(args, kwargs)
    if type(source) is str and not kwargs:
        source = _code(source, "<string>", "exec", _inherited(), -1)
    globals_, locals_ = _scopes(globals_, locals_)
    builtins.exec(source, globals_, locals_, **kwargs)


def cached_eval(source: Any, /, *args: Any, **kwargs: Any) -> Any:
    """The built-in ``eval``, with source text compiled through the cache (leading spaces and
    tabs dropped first, as the built-in does)."""
    globals_, locals_ = _namespaces(args, kwargs)
    if type(source) is str:
        source = _code(source.lstrip(" \t"), "<string>", "eval", _inherited(), -1)
    globals_, locals_ = _scopes(globals_, locals_)
    return builtins.eval(source, globals_, locals_, **kwargs)


#: Where a cold start compiles text: each module, and the name through which it calls the
#: compiler. SQLAlchemy's generates functions (its decorators and attribute setters);
#: typing-inspection's, the predicates of typing's objects.
#: In this order: importing ``dataclasses`` (``inspect``...) defines named tuples.
TARGETS: Final = (
    ("collections", "eval", cached_eval),
    ("typing", "compile", cached_compile),
    ("dataclasses", "exec", cached_exec),
    ("sqlalchemy.util.langhelpers", "compile", cached_compile),
    ("sqlalchemy.util.langhelpers", "exec", cached_exec),
    ("typing_inspection.typing_objects", "exec", cached_exec),
)

#: The targets of modules not imported yet, by module: named in the module's namespace before its
#: code runs (:class:`_BeforeItsCode`).
_pending: dict[str, list[tuple[str, Any]]] = {}


class _BeforeItsCode:
    """A meta path finder for the pending modules: the module is found as the standard path
    finder finds it, and the names are set in its namespace just before its code runs, so that
    the compiling it does while it is imported goes through the cache too."""

    @staticmethod
    def find_spec(name: str, path: Any = None, target: Any = None) -> Any:
        names = _pending.pop(name, None)
        if names is None:
            return None
        from importlib.machinery import PathFinder  # noqa: PLC0415 - loaded at start-up

        spec = PathFinder.find_spec(name, path, target)
        loader = getattr(spec, "loader", None)
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        run = loader.exec_module

        def exec_module(module: Any) -> None:
            for attribute, function in names:
                setattr(module, attribute, function)
                _installed.append((module, attribute, function))
            run(module)

        loader.exec_module = exec_module  # this module's loader (one per module found)
        return spec


def _install() -> None:
    for module_name, name, function in TARGETS:
        module = sys.modules.get(module_name)
        if module is None and "." not in module_name:
            import importlib  # noqa: PLC0415 - the standard library's, loaded at start-up

            module = importlib.import_module(module_name)
        if module is None:
            _pending.setdefault(module_name, []).append((name, function))
        elif name not in vars(module):  # a module that defines the name itself is left alone
            setattr(module, name, function)
            _installed.append((module, name, function))
    if _pending:
        sys.meta_path.insert(0, _BeforeItsCode)


def _uninstall() -> None:
    if _BeforeItsCode in sys.meta_path:
        sys.meta_path.remove(_BeforeItsCode)
    _pending.clear()
    while _installed:
        module, name, function = _installed.pop()
        if vars(module).get(name) is function:
            delattr(module, name)


def decode(body: bytes) -> dict[bytes, bytes] | None:
    """The codes in what follows a cache file's header, by key; None if it cannot be read."""
    try:
        # The layer's own file, written by its build and read-only on Lambda: as trusted as the
        # .pyc files beside it, which Python unmarshals the same way.
        codes = marshal.loads(zlib.decompress(body))  # nosec B302
    except (ValueError, EOFError, TypeError, zlib.error):
        return None
    return codes if isinstance(codes, dict) else None


def read(path: str) -> dict[bytes, bytes] | None:
    """The cache in ``path``, or None if it is missing, unreadable or another interpreter's."""
    try:
        with open(path, "rb") as file:
            data = file.read()
    except OSError:
        return None
    return decode(data[len(HEADER) :]) if data.startswith(HEADER) else None


def start(path: str = DEFAULT_PATH) -> bool:
    """Compile through the cache in ``path`` until :func:`stop`; whether it was usable."""
    if _installed or _pending:
        return True
    codes = read(path)
    if not codes:
        return False
    _codes.update(codes)
    _install()
    return True


def stop() -> None:
    """The built-ins again, and the cache freed."""
    _uninstall()
    _codes.clear()


def record() -> None:
    """Record everything compiled from now on (the layer's build), for :func:`save`."""
    global _recorded  # noqa: PLW0603 - one recording per process
    _recorded = {}
    if not _installed and not _pending:
        _install()


def recorded() -> dict[bytes, bytes]:
    """What was compiled since :func:`record`, by key."""
    return dict(_recorded or {})


def save(codes: dict[bytes, bytes], path: str) -> None:
    """Write ``codes`` as a cache that :func:`start` reads."""
    with open(path, "wb") as file:
        file.write(HEADER + zlib.compress(marshal.dumps(codes), 9))


def counts() -> dict[str, int]:
    """Lookups answered from the cache (hits) and compiled (misses) in this process."""
    return dict(_counts)
