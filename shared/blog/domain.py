"""The domain's field limits and canonical spellings, shared by the tables, the request models
and the repositories; no SQLAlchemy here, so every handler may import it cheaply."""

from __future__ import annotations

from typing import Final

EMAIL_MAX: Final = 255
USERNAME_MAX: Final = 50
PASSWORD_HASH_MAX: Final = 255
TITLE_MAX: Final = 200
CONTENT_MAX: Final = 100_000
STATUS_ACTIVE: Final = "active"
STATUS_INACTIVE: Final = "inactive"
IDEMPOTENCY_KEY_MAX: Final = 255
#: Client key of the account-wide row of ``sign_in_failures`` (no address looks like it).
ACCOUNT_WIDE: Final = "*"
SIGN_IN_CLIENT_MAX: Final = 64


#: Longest local part (RFC 5321).
EMAIL_LOCAL_MAX: Final = 64
# Characters that change how text renders without showing: joiners and fillers that are not of
# category Cf (which is refused whole), and the variation selectors.
_INVISIBLE: Final = frozenset(
    "\u034f\u115f\u1160\u17b4\u17b5\u180b\u180c\u180d\u180e\u180f\u2800\u3164\uffa0"
)
_VARIATION_SELECTORS: Final = ((0xFE00, 0xFE0F), (0xE0100, 0xE01EF))


def invisible_character(text: str, *, unassigned: bool = True) -> str | None:
    """The first character of ``text`` that does not show or that reorders text: format
    characters (Unicode category Cf: zero-width spaces and joiners, bidi controls, the soft
    hyphen...), fillers and variation selectors; with ``unassigned`` also unassigned and
    private-use code points. None when there is none."""
    if text.isascii():
        return None  # every ASCII character is assigned, none is Cf, a filler or a selector
    import unicodedata

    refused = {"Cf", "Cn", "Co"} if unassigned else {"Cf"}
    for char in text:
        code = ord(char)
        if (
            char in _INVISIBLE
            or unicodedata.category(char) in refused
            or any(low <= code <= high for low, high in _VARIATION_SELECTORS)
        ):
            return char
    return None


def canonical_email(email: str) -> str:
    """The one spelling of an email address: trimmed, Unicode NFC, lower-case, the domain
    IDNA-encoded (IDNA 2008 with UTS 46 mapping); ``ValueError`` for what is not an address or
    too long once normalized."""
    import unicodedata

    import idna

    text = unicodedata.normalize("NFC", email.strip())
    local, at, domain = text.rpartition("@")
    if not at or not local or not domain:
        raise ValueError("must be an email address like name@example.com")
    found = invisible_character(text)
    if found is not None:
        raise ValueError(
            f"must not contain an invisible or formatting character (U+{ord(found):04X})"
        )
    if domain.isascii():
        ascii_domain = domain.lower()  # already its A-labels: only case can differ
    else:
        try:
            ascii_domain = idna.encode(domain, uts46=True).decode("ascii").lower()
        except (idna.IDNAError, UnicodeError) as error:
            raise ValueError("the domain must be a valid internationalized domain name") from error
    local = unicodedata.normalize("NFC", local.lower())
    if len(local) > EMAIL_LOCAL_MAX:
        raise ValueError(f"the part before @ must be at most {EMAIL_LOCAL_MAX} characters")
    normalized = f"{local}@{ascii_domain}"
    if len(normalized) > EMAIL_MAX:
        raise ValueError(f"must be at most {EMAIL_MAX} characters once normalized")
    return normalized


def normalize_email(email: str) -> str:
    """Emails are stored in their canonical spelling (:func:`canonical_email`), so uniqueness
    and look-ups ignore case, Unicode composition and the form of the domain; what is no valid
    address (a login to look up) is only trimmed and lower-cased."""
    if email.isascii():
        # Then NFC changes nothing, the domain is its own A-labels and nothing is invisible: the
        # canonical spelling of a valid address is the trimmed lower-case text, as is the fallback.
        return email.strip().lower()
    try:
        return canonical_email(email)
    except ValueError:
        return email.strip().lower()


def normalize_username(username: str) -> str:
    """Usernames are stored trimmed and lower-case, so ``Alice`` and ``alice`` cannot both exist."""
    return username.strip().lower()
