"""Entity tags and conditional requests (RFC 9110, section 13): ``ETag``, ``If-Match``,
``If-None-Match``.

A user's or post's entity tag is its row version: ``"v<version>"`` (strong). ``If-Match`` compares
strongly (a weak tag ``W/"v3"`` never matches), ``If-None-Match`` weakly; ``*`` matches any
current representation. A header that cannot be parsed matches nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

_TAG: Final = re.compile(r'\s*(W/)?"([\x21\x23-\x7e\x80-\xff]*)"\s*(?:,|$)')
_VERSION: Final = re.compile(r"v([1-9][0-9]{0,9})")


def etag(version: int) -> str:
    """The entity tag of a row at ``version``."""
    return f'"v{version}"'


@dataclass(frozen=True, slots=True)
class Precondition:
    """A parsed ``If-Match`` or ``If-None-Match`` list: the tags it names, or any (``*``)."""

    any: bool = False
    strong: frozenset[int] = frozenset()  # versions named by strong tags
    weak: frozenset[int] = frozenset()  # versions named by weak tags

    def matches(self, version: int, *, weak: bool = False) -> bool:
        """Whether the row at ``version`` passes: strong comparison unless ``weak``."""
        return self.any or version in self.strong or (weak and version in self.weak)


def parse(header: str) -> Precondition:
    """``*`` or a comma-separated list of entity tags; tags not ours match no version."""
    if header.strip() == "*":
        return Precondition(any=True)
    strong: set[int] = set()
    weak: set[int] = set()
    position = 0
    text = header.strip()
    while position < len(text):
        found = _TAG.match(text, position)
        if found is None:
            return Precondition()  # malformed: matches nothing
        version = _VERSION.fullmatch(found.group(2))
        if version is not None:
            (weak if found.group(1) else strong).add(int(version.group(1)))
        position = found.end()
    return Precondition(strong=frozenset(strong), weak=frozenset(weak))


def not_modified(if_none_match: str | None, current: str | None) -> bool:
    """Whether a GET with ``If-None-Match`` may be answered 304 for the tag ``current``."""
    if not if_none_match or not current:
        return False
    version = _VERSION.fullmatch(current.strip('"'))
    if version is None:
        return False
    return parse(if_none_match).matches(int(version.group(1)), weak=True)
