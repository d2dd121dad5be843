"""Identity: one spelling per email address, and no text that renders other than it reads."""

from __future__ import annotations

import pytest

#: Characters that do not show, or reorder what follows: refused in emails and titles.
INVISIBLE = {
    "zero-width space": "\u200b",
    "zero-width non-joiner": "\u200c",
    "zero-width joiner": "\u200d",
    "word joiner": "\u2060",
    "byte order mark": "\ufeff",
    "soft hyphen": "\u00ad",
    "left-to-right mark": "\u200e",
    "right-to-left mark": "\u200f",
    "right-to-left override": "\u202e",
    "left-to-right embedding": "\u202a",
    "right-to-left isolate": "\u2067",
    "pop directional isolate": "\u2069",
    "Arabic letter mark": "\u061c",
    "Mongolian vowel separator": "\u180e",
    "Hangul filler": "\u3164",
    "Hangul choseong filler": "\u115f",
    "halfwidth Hangul filler": "\uffa0",
    "braille blank": "\u2800",
    "combining grapheme joiner": "\u034f",
    "variation selector 16": "\ufe0f",
    "variation selector 256": "\U000e01ef",
    "tag space": "\U000e0020",
    "interlinear annotation anchor": "\ufff9",
}


@pytest.mark.parametrize("name", INVISIBLE)
def test_emails_with_an_invisible_character_are_refused(name: str) -> None:
    from blog.domain import canonical_email

    char = INVISIBLE[name]
    for email in (
        f"ali{char}ce@example.com",
        f"alice@exa{char}mple.com",
        f"{char}alice@example.com",
    ):
        with pytest.raises(ValueError, match="invisible|domain"):
            canonical_email(email)


@pytest.mark.parametrize("name", INVISIBLE)
def test_titles_with_an_invisible_character_are_refused(name: str) -> None:
    from pydantic import ValidationError

    from blog.schemas import PostCreate

    with pytest.raises(ValidationError, match="invisible"):
        PostCreate.model_validate({"title": f"Hello{INVISIBLE[name]} world", "content": "c"})


@pytest.mark.parametrize("name", INVISIBLE)
def test_usernames_with_an_invisible_character_are_refused(name: str) -> None:
    from pydantic import ValidationError

    from blog.schemas import UserCreate

    with pytest.raises(ValidationError):
        UserCreate.model_validate(
            {"email": "a@b.co", "username": f"ali{INVISIBLE[name]}ce", "password": "p" * 8}
        )


SAME_ADDRESS = [
    # The same address in other spellings: case, Unicode composition, the domain's U-labels
    ("alice@example.com", "ALICE@EXAMPLE.COM"),
    ("alice@example.com", "  Alice@Example.Com "),
    ("josé@example.com", "jose\u0301@example.com"),  # NFC: é composed and decomposed
    ("josé@example.com", "JOSÉ@EXAMPLE.COM"),
    ("user@xn--bcher-kva.de", "user@bücher.de"),
    ("user@xn--bcher-kva.de", "user@BÜCHER.DE"),
    ("user@xn--bcher-kva.de", "user@bu\u0308cher.de"),  # a decomposed ü in the domain
    ("user@xn--bcher-kva.de", "user@XN--BCHER-KVA.DE"),
    ("u@xn--fa-hia.de", "u@faß.de"),  # IDNA 2008: ß is kept, not mapped to "ss"
    ("u@xn--mller-kva.example", "u@Müller.example"),
]


@pytest.mark.parametrize(("canonical", "spelling"), SAME_ADDRESS)
def test_every_spelling_of_an_address_normalizes_to_one(canonical: str, spelling: str) -> None:
    from blog.domain import canonical_email

    assert canonical_email(spelling) == canonical_email(canonical) == canonical


def test_length_is_checked_after_normalizing() -> None:
    from pydantic import ValidationError

    from blog.domain import EMAIL_MAX, canonical_email
    from blog.schemas import UserCreate

    # 255 characters as typed, longer once the domain is IDNA-encoded: refused
    typed = "a" * 64 + "@" + "ü" * 60 + "." + "b" * (EMAIL_MAX - 64 - 1 - 60 - 1 - 4) + ".com"
    assert len(typed) == EMAIL_MAX
    with pytest.raises(ValueError, match="domain|at most"):
        canonical_email(typed)
    with pytest.raises(ValidationError):
        UserCreate.model_validate({"email": typed, "username": "abc", "password": "p" * 8})
    # 65 characters before the @ once lower-cased (İ lower-cases to two code points): refused
    with pytest.raises(ValueError, match="at most 64"):
        canonical_email("\u0130" * 33 + "@example.com")


@pytest.mark.parametrize(
    "email", ["user@bü_cher.de", "user@" + "ü" * 64 + ".de", "user@☃.de", "user@ü..de"]
)
def test_unicode_domains_that_idna_refuses_are_refused(email: str) -> None:
    from blog.domain import canonical_email

    with pytest.raises(ValueError, match="domain"):
        canonical_email(email)


def test_no_ascii_character_is_invisible() -> None:
    # invisible_character answers an ASCII text at once: no ASCII character is one it refuses.
    import unicodedata

    from blog.domain import invisible_character

    for code in range(128):
        char = chr(code)
        assert unicodedata.category(char) not in {"Cf", "Cn", "Co"}
        assert invisible_character(f"a{char}b") is None
    assert invisible_character("a\u200bb") == "\u200b"  # the first non-ASCII one still counts


ASCII_EMAILS = [
    "alice@example.com",
    "  Alice@Example.COM\t",
    "\x1c\x1fBob@Example.org\x0b",  # str.strip() trims these too
    "no-at-sign",
    "@example.com",
    "alice@",
    "a@b@Example.com",
    "x" * 65 + "@example.com",  # local part too long: not an address, only trimmed and lowered
    "a@" + "b" * 260 + ".com",  # too long
    'Quo"te,Comma@EXAMPLE.com',
    "back\\slash@example.com",
]


@pytest.mark.parametrize("email", ASCII_EMAILS)
def test_an_ascii_email_normalizes_as_canonical_email_decides(email: str) -> None:
    from blog.domain import canonical_email, normalize_email

    try:
        expected = canonical_email(email)
    except ValueError:
        expected = email.strip().lower()
    assert normalize_email(email) == expected


def test_random_ascii_emails_normalize_as_canonical_email_decides() -> None:
    import random

    from blog.domain import canonical_email, normalize_email

    pick = random.Random(14)
    alphabet = "aZ9.@ _-\t\x1f\x7f\\\"'"
    for _ in range(5_000):
        email = "".join(pick.choice(alphabet) for _ in range(pick.randint(0, 12)))
        try:
            expected = canonical_email(email)
        except ValueError:
            expected = email.strip().lower()
        assert normalize_email(email) == expected, repr(email)
