"""Entity tags and If-Match / If-None-Match parsing (RFC 9110, section 13)."""

from __future__ import annotations

import pytest

from blog.preconditions import etag, not_modified, parse


def test_etag_is_the_quoted_row_version() -> None:
    assert etag(7) == '"v7"'


@pytest.mark.parametrize(
    ("header", "version", "matches"),
    [
        ('"v3"', 3, True),
        ('"v3"', 4, False),
        ('"v1", "v3"', 3, True),
        ('"v1","v2" , "v3"', 2, True),
        ("*", 123, True),
        (" * ", 1, True),
        ('W/"v3"', 3, False),  # If-Match compares strongly
        ('"3"', 3, False),  # not one of ours
        ('"v03"', 3, False),
        ("v3", 3, False),  # unquoted: malformed
        ('"v3', 3, False),
        ('"v3" garbage', 3, False),
        ("", 1, False),
        ('"v99999999999"', 1, False),  # past any version
    ],
)
def test_if_match_compares_strongly_and_refuses_what_it_cannot_parse(
    header: str, version: int, matches: bool
) -> None:
    assert parse(header).matches(version) is matches


@pytest.mark.parametrize(
    ("header", "current", "expected"),
    [
        ('"v3"', '"v3"', True),
        ('W/"v3"', '"v3"', True),  # If-None-Match compares weakly
        ('"v2", W/"v3"', '"v3"', True),
        ("*", '"v1"', True),
        ('"v2"', '"v3"', False),
        (None, '"v3"', False),
        ('"v3"', None, False),
        ("nonsense", '"v3"', False),
    ],
)
def test_if_none_match_compares_weakly(
    header: str | None, current: str | None, expected: bool
) -> None:
    assert not_modified(header, current) is expected
