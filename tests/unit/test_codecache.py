"""The code cache of a cold start (``blog.codecache``): what it answers is what the compiler
makes of the same text, it is used only while it is started, and a cache that does not fit the
interpreter is not used at all.

The cold path itself (a function's import on a cache recorded by the layer's build step, in a
fresh interpreter) is checked in ``test_cold_path.py``.
"""

from __future__ import annotations

import builtins
import collections
import dataclasses
import marshal
import sys
import textwrap
import types
import typing
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from blog import codecache

SOURCES = [
    ("x = 1\ndef f(a, b=2):\n    return a + b + x\n", "<string>", "exec"),
    ("lambda _cls, a, b: _tuple_new(_cls, (a, b))", "namedtuple_P", "eval"),
    ("list[int] | None", "<string>", "eval"),
    ("def f(x: Undefined) -> Later: ...", "<generated>", "exec"),  # annotations: see the flags
]


@pytest.fixture
def fresh() -> Iterator[None]:
    """No cache loaded, nothing installed, counts at zero; the same after the test."""

    def reset() -> None:
        codecache.stop()
        codecache._recorded = None
        codecache._counts.update(hits=0, misses=0)

    reset()
    yield
    reset()


def _same(a: types.CodeType, b: types.CodeType) -> bool:
    """Equal code (its instructions, constants, names, flags, line table), in the same file."""
    return a == b and (a.co_filename, a.co_qualname) == (b.co_filename, b.co_qualname)


@pytest.mark.usefixtures("fresh")
@pytest.mark.parametrize(("source", "filename", "mode"), SOURCES)
def test_what_the_cache_answers_is_what_the_compiler_makes_of_the_text(
    source: str, filename: str, mode: str
) -> None:
    # Given: the text compiled once while recording (a miss), and the recording as a cache
    codecache.record()
    recorded = codecache.cached_compile(source, filename, mode)
    codes = codecache.recorded()
    codecache.stop()
    codecache._recorded = None
    codecache._codes.update(codes)

    # When: it is compiled again
    hit = codecache.cached_compile(source, filename, mode)

    # Then: it came from the cache, and both are the built-in's code for that text, here
    assert codecache.counts() == {"hits": 1, "misses": 1}
    expected = compile(source, filename, mode)  # inherits this module's future features
    assert _same(recorded, expected)
    assert _same(hit, expected)
    assert hit is not recorded  # a new code object, as compile() returns


@pytest.mark.usefixtures("fresh")
def test_the_callers_future_features_are_part_of_the_text_as_compiled() -> None:
    # Given: this module compiles with `from __future__ import annotations`
    source = "def f(x: Undefined) -> Later: ...\n"

    # When: the same text is compiled inheriting them, and not
    inherited = codecache.cached_compile(source, "<s>", "exec")
    plain = codecache.cached_compile(source, "<s>", "exec", dont_inherit=True)

    # Then: each is what the built-in makes of it, and they differ as the built-in's do (the
    # annotations are strings, or evaluated when the function is made)
    assert _same(inherited, compile(source, "<s>", "exec"))
    assert _same(plain, compile(source, "<s>", "exec", dont_inherit=True))
    namespace: dict[str, object] = {}
    exec(inherited, namespace)  # noqa: S102 - the test's own text
    assert namespace["f"].__annotations__ == {"x": "Undefined", "return": "Later"}  # type: ignore[attr-defined]
    with pytest.raises(NameError):
        exec(plain, {})  # noqa: S102 - the annotations are evaluated: Undefined is not defined
    assert codecache.counts()["misses"] == 2  # two different keys


@pytest.mark.usefixtures("fresh")
def test_exec_and_eval_use_the_given_or_the_callers_namespaces_as_the_built_ins_do() -> None:
    # exec with explicit namespaces, as dataclasses calls it
    globals_: dict[str, object] = {"base": 40}
    local: dict[str, object] = {}
    codecache.cached_exec("def answer():\n    return base + 2\n", globals_, local)
    assert local["answer"]() == 42  # type: ignore[operator]
    assert "__builtins__" in globals_  # as the built-in does to a namespace without it

    # The namespaces given by name, as CPython 3.13's built-ins take them too
    named: dict[str, object] = {}
    codecache.cached_exec("x = 20", globals=named)
    assert codecache.cached_eval("x + y", globals=named, locals={"y": 1}) == 21  # noqa: S307

    # eval drops leading spaces and tabs first, as the built-in does
    assert codecache.cached_eval(" \t1 + 2", {}) == 3

    # Without namespaces: the caller's globals, and a snapshot of its locals
    here = 5
    assert codecache.cached_eval("here * 2") == eval("here * 2")  # noqa: S307
    codecache.cached_exec("here = 6")
    assert here == 5  # a function's locals are not written back, as with the built-in

    # Sources that are not text pass through to the built-ins
    code = compile("7 * 6", "<c>", "eval")
    assert codecache.cached_eval(code, {}) == 42
    tree = codecache.cached_compile("x = 1", "<t>", "exec", 0x400)  # PyCF_ONLY_AST
    assert type(tree).__name__ == "Module"
    assert codecache.counts() == {"hits": 0, "misses": 6}  # each text above once


@pytest.mark.usefixtures("fresh")
def test_text_that_does_not_compile_fails_as_with_the_built_in() -> None:
    with pytest.raises(SyntaxError) as cached:
        codecache.cached_compile("def (:", "<bad>", "exec")
    with pytest.raises(SyntaxError) as built_in:
        compile("def (:", "<bad>", "exec")
    assert (cached.value.msg, cached.value.lineno, cached.value.offset) == (
        built_in.value.msg,
        built_in.value.lineno,
        built_in.value.offset,
    )
    assert codecache.recorded() == {}  # nothing to keep


@pytest.mark.usefixtures("fresh")
def test_the_modules_compile_through_the_cache_only_between_start_and_stop(
    tmp_path: Path,
) -> None:
    # Given: a cache recorded while a dataclass, a named tuple and a forward reference were made
    def make() -> tuple[type, type, object]:
        @dataclasses.dataclass(frozen=True, order=True)
        class Point:
            x: int
            y: int = 0

        pair = collections.namedtuple("pair", "left right")  # noqa: PYI024 - the case measured
        return Point, pair, typing.ForwardRef("list[Point]")

    codecache.record()
    make()
    path = tmp_path / "codecache.bin"
    codecache.save(codecache.recorded(), str(path))
    codecache.stop()
    codecache._recorded = None
    assert "exec" not in vars(dataclasses)

    # When: it is started, the same things are made, and it is stopped
    codecache._counts.update(hits=0, misses=0)
    assert codecache.start(str(path)) is True
    assert vars(dataclasses)["exec"] is codecache.cached_exec
    assert vars(typing)["compile"] is codecache.cached_compile
    assert vars(collections)["eval"] is codecache.cached_eval
    point, pair, forward = make()
    counted = codecache.counts()
    codecache.stop()

    # Then: every text came from the cache
    assert counted["hits"] >= 3
    assert counted["misses"] == 0
    # And: what was made behaves as ever
    a, b = point(1, 2), point(1)  # type: ignore[call-arg]
    assert (a == point(1, 2), a > b, repr(b), hash(a) == hash(point(1, 2))) == (
        True,
        True,
        "test_the_modules_compile_through_the_cache_only_between_start_and_stop.<locals>.make"
        ".<locals>.Point(x=1, y=0)",
        True,
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.x = 3  # type: ignore[misc]
    assert pair(1, 2).right == 2
    assert forward == typing.ForwardRef("list[Point]")
    # And: after stop the modules call the built-ins again
    assert "exec" not in vars(dataclasses)
    assert "compile" not in vars(typing)
    assert "eval" not in vars(collections)
    assert codecache._codes == {}


@pytest.mark.usefixtures("fresh")
def test_a_module_imported_later_compiles_through_the_cache_from_its_first_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given: a module, not imported yet, that generates a function while it is imported
    package = tmp_path / "generated_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "maker.py").write_text(
        textwrap.dedent(
            """
            namespace = {}
            exec("def made():\\n    return 'made'\\n", namespace)
            made = namespace["made"]
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    target = ("generated_pkg.maker", "exec", codecache.cached_exec)
    monkeypatch.setattr(codecache, "TARGETS", (*codecache.TARGETS, target))
    codecache.record()

    # When: it is imported
    from generated_pkg import maker  # noqa: PLC0415 - imported by the test, on purpose

    # Then: its text was compiled through the cache (recorded), and the module works
    assert maker.made() == "made"
    assert vars(maker)["exec"] is codecache.cached_exec
    assert codecache.counts()["misses"] >= 1
    # And: stop removes the name from it, and the finder from the import system
    codecache.stop()
    assert "exec" not in vars(maker)
    assert codecache._BeforeItsCode not in sys.meta_path
    monkeypatch.delitem(sys.modules, "generated_pkg.maker")
    monkeypatch.delitem(sys.modules, "generated_pkg")


@pytest.mark.usefixtures("fresh")
@pytest.mark.parametrize(
    "content",
    [
        b"",  # empty
        b"something else entirely",
        codecache.HEADER[:-4] + b"\x00\x00\r\n" + b"x",  # another interpreter's bytecode
        codecache.HEADER + b"not zlib",
        codecache.HEADER + b"x\x9c\x03\x00\x00\x00\x00\x01",  # zlib of nothing: no dict
    ],
)
def test_a_cache_that_does_not_fit_the_interpreter_is_not_used(
    tmp_path: Path, content: bytes
) -> None:
    path = tmp_path / "codecache.bin"
    path.write_bytes(content)
    assert codecache.read(str(path)) is None
    assert codecache.start(str(path)) is False
    assert codecache.start(str(tmp_path / "missing.bin")) is False
    assert "exec" not in vars(dataclasses)
    assert builtins.exec is exec


def test_the_build_check_refuses_a_layer_without_a_usable_code_cache(tmp_path: Path) -> None:
    from importlib.util import MAGIC_NUMBER  # noqa: PLC0415

    from local.sam_build_check import PYC_TAG, code_cache_problems  # noqa: PLC0415

    # Given: a layer whose blog package is compiled (its bytecode's magic number: this one's)
    layer = tmp_path / "python"
    (layer / "blog" / "__pycache__").mkdir(parents=True)
    (layer / "blog" / "__pycache__" / f"db.{PYC_TAG}.pyc").write_bytes(MAGIC_NUMBER + b"\0" * 12)
    cache = layer / "blog" / "codecache.bin"
    code = marshal.dumps(compile("1", "<n>", "eval"))
    texts = {i.to_bytes(16, "big"): code for i in range(250)}

    # Then: no cache, a cache of another interpreter, a damaged one, a nearly empty one are refused
    assert code_cache_problems(layer) != []
    cache.write_bytes(b"blog-code-cache-1\n" + b"\0\0\r\n" + zlib.compress(marshal.dumps(texts)))
    assert "not this layer's bytecode" in code_cache_problems(layer)[0]
    cache.write_bytes(codecache.HEADER + b"damaged")
    assert "cannot be read" in code_cache_problems(layer)[0]
    codecache.save(dict(list(texts.items())[:10]), str(cache))
    assert "fewer than expected" in code_cache_problems(layer)[0]
    # And: the cache as the build writes it passes
    codecache.save(texts, str(cache))
    assert code_cache_problems(layer) == []
