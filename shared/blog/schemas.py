"""Request and response models (pydantic v2). Responses never carry password hashes or tokens."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from functools import lru_cache
from operator import itemgetter
from types import UnionType
from typing import (
    Annotated,
    Any,
    Final,
    Generic,
    Literal,
    NotRequired,
    Protocol,
    Self,
    TypeAlias,
    TypeVar,
    Union,
    cast,
    get_args,
    get_origin,
    get_type_hints,
)

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    model_validator,
    with_config,
)
from pydantic import ValidationError as PydanticValidationError
from pydantic.fields import FieldInfo
from typing_extensions import TypedDict  # pydantic needs this one before Python 3.12

from blog.domain import (
    CONTENT_MAX,
    EMAIL_MAX,
    PASSWORD_HASH_MAX,
    TITLE_MAX,
    USERNAME_MAX,
    canonical_email,
    invisible_character,
)
from blog.security import are_password_hashes, is_password_hash

T = TypeVar("T")

#: PostgreSQL integer ids: anything outside is simply not an id (and must not reach SQL).
ID_MAX: Final = 2**31 - 1
PASSWORD_MIN: Final = 8
# Argon2 accepts any length; the cap bounds the work one request can cause.
PASSWORD_MAX: Final = 256
SEARCH_MAX: Final = 200
#: Search needs a trigram (three letters or digits in a row) to be answered from its index.
SEARCH_MIN: Final = 3
#: At most this many characters of a post's content are in a list item's excerpt.
EXCERPT_CHARS: Final = 280
_ELLIPSIS: Final = "\u2026"

_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s.]+(\.[^@\s.]+)+$")
_USERNAME = r"^[A-Za-z0-9](?:[A-Za-z0-9_.-]*[A-Za-z0-9])?$"


# Unicode's control characters (category Cc) and surrogates (Cs), which PostgreSQL or a reader
# would choke on; multi-line text may keep tab, line feed and carriage return.
_FORBIDDEN_SINGLE_LINE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_FORBIDDEN_MULTI_LINE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")

# What the validators accept, as JSON Schema patterns (the same in ECMA-262, Rust's regex and
# Python's re) for the OpenAPI document, so that clients and fuzzers know it; the validators still
# decide. Lone surrogates are left out: no JSON Schema string holds one (and pydantic refuses them).
_CC = r"\x00-\x1f\x7f-\x9f"
_CC_MULTI = r"\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f"
SINGLE_LINE_PATTERN: Final = rf"^[^{_CC}]*$"
TITLE_PATTERN: Final = rf"^[^{_CC}]*[^\s{_CC}][^{_CC}]*$"
CONTENT_PATTERN: Final = rf"^[^{_CC_MULTI}]*[^\s{_CC_MULTI}][^{_CC_MULTI}]*$"
# Surrounding spaces are stripped; control characters are refused anywhere.
EMAIL_PATTERN: Final = (
    rf"^[^\S{_CC}]*[^@\s{_CC}]{{1,64}}@[^@.\s{_CC}]+(\.[^@.\s{_CC}]+)+[^\S{_CC}]*$"
)


def _documented(pattern: str) -> Any:
    """The JSON Schema ``pattern`` of a type whose validators enforce it."""
    return Field(json_schema_extra={"pattern": pattern})


def _clean_text(value: str, *, multiline: bool) -> str:
    """Refuse NUL and other control characters, and lone surrogates."""
    found = (_FORBIDDEN_MULTI_LINE if multiline else _FORBIDDEN_SINGLE_LINE).search(value)
    if found:
        char = found.group()
        kind = "a lone surrogate" if "\ud800" <= char <= "\udfff" else "a control character"
        raise ValueError(f"must not contain {kind} (U+{ord(char):04X})")
    return value


def _single_line(value: str) -> str:
    return _clean_text(value, multiline=False)


def _multi_line(value: str) -> str:
    return _clean_text(value, multiline=True)


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return value


def _email(value: str) -> str:
    normalized = canonical_email(value)
    if not _EMAIL.match(normalized):
        raise ValueError("must be an email address like name@example.com")
    return normalized


def _visible(value: str) -> str:
    found = invisible_character(value, unassigned=False)
    if found is not None:
        raise ValueError(
            f"must not contain an invisible or formatting character (U+{ord(found):04X})"
        )
    return value


Email = Annotated[
    str,
    # Checked as it comes and again once normalized (canonical_email): IDNA makes a domain longer.
    StringConstraints(min_length=3, max_length=EMAIL_MAX),
    AfterValidator(_single_line),
    AfterValidator(_email),
    _documented(EMAIL_PATTERN),
]
Username = Annotated[
    str,
    StringConstraints(min_length=3, max_length=USERNAME_MAX, pattern=_USERNAME),
    AfterValidator(str.lower),
]
Password = Annotated[
    str,
    StringConstraints(min_length=PASSWORD_MIN, max_length=PASSWORD_MAX),
    AfterValidator(_single_line),
    _documented(SINGLE_LINE_PATTERN),
]
Title = Annotated[
    str,
    StringConstraints(min_length=1, max_length=TITLE_MAX),
    AfterValidator(_single_line),
    AfterValidator(_visible),
    AfterValidator(_not_blank),
    _documented(TITLE_PATTERN),
]
Content = Annotated[
    str,
    StringConstraints(min_length=1, max_length=CONTENT_MAX),
    AfterValidator(_multi_line),
    AfterValidator(_not_blank),
    _documented(CONTENT_PATTERN),
]


def _integral(value: object) -> object:
    """JSON Schema counts 3.0 as an integer, so the API does too (strict models refuse floats)."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


Id = Annotated[int, Field(ge=1, le=ID_MAX), BeforeValidator(_integral)]


class Request(BaseModel):
    """Strict request body: unknown fields and type coercions are refused."""

    # Built on first use (as Response): each function validates one or two of these models.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, defer_build=True)


class Response(BaseModel):
    """Response body built from the repositories' records and rows (``from_attributes``)."""

    model_config = ConfigDict(from_attributes=True, defer_build=True)


def _partial_update_schema(schema: dict[str, Any]) -> None:
    # As the validator below has it: at least one field, and no field null.
    schema["minProperties"] = 1
    for field in schema.get("properties", {}).values():
        variants = [v for v in field.pop("anyOf", []) if v != {"type": "null"}]
        field.update(variants[0] if len(variants) == 1 else {"anyOf": variants} if variants else {})
        field.pop("default", None)


class PartialUpdate(Request):
    """A PATCH body: only the given fields change; at least one, and none set to null."""

    model_config = ConfigDict(json_schema_extra=_partial_update_schema)

    @model_validator(mode="after")
    def _some_field(self) -> Self:
        if not self.model_fields_set:
            raise ValueError("give at least one field to change")
        if any(getattr(self, name) is None for name in self.model_fields_set):
            raise ValueError("fields cannot be set to null")
        return self


class UserCreate(Request):
    """Registration."""

    email: Email
    username: Username
    password: Password
    welcome_post: bool = Field(
        default=False, description="Also create a published welcome post, atomically."
    )


def _user_update_schema(schema: dict[str, Any]) -> None:
    # As the validators have it: some field to change, and current_password with a new email or
    # password.
    _partial_update_schema(schema)
    schema["anyOf"] = [{"required": [name]} for name in ("email", "username", "password")]
    schema["dependentRequired"] = {"email": ["current_password"], "password": ["current_password"]}


class UserUpdate(PartialUpdate):
    """A change to one's own account; only the given fields change.

    A new ``email`` or ``password`` needs ``current_password``: the caller's own password (an
    admin changing another account gives theirs). A new password signs the user out everywhere.
    """

    model_config = ConfigDict(json_schema_extra=_user_update_schema)

    email: Email | None = None
    username: Username | None = None
    password: Password | None = None
    current_password: (
        Annotated[
            str,
            StringConstraints(min_length=1, max_length=PASSWORD_MAX),
            AfterValidator(_single_line),
            _documented(SINGLE_LINE_PATTERN),
        ]
        | None
    ) = Field(
        default=None,
        description="Your current password; required with email or password",
    )

    @model_validator(mode="after")
    def _current_password_with_credentials(self) -> Self:
        credentials = self.email is not None or self.password is not None
        if credentials and self.current_password is None:
            raise ValueError("current_password is required to change the email or password")
        if not self.model_fields_set - {"current_password"}:
            raise ValueError("give at least one field to change")
        return self


class PublicUserOut(Response):
    """A user as others see them: no email, no role."""

    id: int
    username: str
    is_active: bool
    created_at: datetime
    updated_at: datetime


class UserOut(PublicUserOut):
    """A user as they themselves and admins see them (never the password hash)."""

    email: str
    is_admin: bool


class Viewer(Protocol):
    """Whoever a response is for."""

    def may_act_for(self, user_id: int) -> bool:
        """Whether they may see and change what belongs to ``user_id``."""
        ...


def user_out(user: Any, viewer: Viewer) -> UserOut | PublicUserOut:
    """``user`` as ``viewer`` may see them: with email and role only for themselves and admins."""
    shape = UserOut if viewer.may_act_for(user.id) else PublicUserOut
    return shape.model_validate(user)


class TokenRequest(Request):
    """Sign-in: an email or a username, and the password."""

    # No stored email, username or password holds a control character, so none is looked up.
    login: Annotated[
        str,
        StringConstraints(min_length=1, max_length=EMAIL_MAX),
        AfterValidator(_single_line),
        _documented(SINGLE_LINE_PATTERN),
    ] = Field(description="Email address or username")
    password: Annotated[
        str,
        StringConstraints(min_length=1, max_length=PASSWORD_MAX),
        AfterValidator(_single_line),
        _documented(SINGLE_LINE_PATTERN),
    ]


class TokenOut(BaseModel):
    """A signed, short-lived bearer token."""

    model_config = ConfigDict(defer_build=True)  # built on first use: one function uses it

    access_token: str
    token_type: Literal["Bearer"] = "Bearer"
    expires_in: int = Field(description="Seconds until the token expires")


class PostCreate(Request):
    """A new post; it starts as a draft."""

    title: Title
    content: Content


class PostUpdate(PartialUpdate):
    """An edit of a post; only the given fields change."""

    title: Title | None = None
    content: Content | None = None


class PostOut(Response):
    """A post."""

    id: int
    title: str
    content: str
    published: bool
    author_id: int
    created_at: datetime
    updated_at: datetime


def make_excerpt(text: str) -> str:
    """The start of ``text``, at most ``EXCERPT_CHARS`` characters: cut at a word boundary where
    one is near, ending in an ellipsis when something was cut (so an excerpt of an excerpt is the
    same excerpt)."""
    if len(text) <= EXCERPT_CHARS:
        return text
    cut = text[: EXCERPT_CHARS - 1]
    space = cut.rfind(" ")
    if space >= EXCERPT_CHARS // 2:
        cut = cut[:space]
    return cut.rstrip() + _ELLIPSIS


class PostListItem(Response):
    """A post as lists show it: its content only as an excerpt (``GET /posts/{id}`` has it all),
    so a page stays small whatever its posts hold."""

    id: int
    title: str
    excerpt: Annotated[str, AfterValidator(make_excerpt)] = Field(
        description=f"The start of the content, at most {EXCERPT_CHARS} characters, cut at a "
        "word boundary and ending in \u2026 when the content is longer (GET /posts/{post_id} "
        "has the whole content)",
        json_schema_extra={"maxLength": EXCERPT_CHARS},
    )
    published: bool
    author_id: int
    created_at: datetime
    updated_at: datetime


class TransferRequest(Request):
    """Where to move a user's posts."""

    to_user_id: Id


class TransferOut(BaseModel):
    """How many posts moved."""

    model_config = ConfigDict(defer_build=True)

    moved: int


class Page(BaseModel, Generic[T]):
    """One page of a list, the total across pages, and the cursor of the next page."""

    model_config = ConfigDict(defer_build=True)  # each list builds its own Page[...]

    items: list[T]
    total: int = Field(
        description="Rows across all pages: exact up to 1,000, beyond that the database's "
        "estimate (see total_exact)"
    )
    total_exact: bool = Field(description="Whether total is an exact count or an estimate")
    page: int | None = Field(description="The page number asked for; null on a cursor's page")
    page_size: int
    next_cursor: str | None = Field(
        description="Pass as cursor to get the next page; null on the last page. Also sent as "
        'a Link header with rel="next"'
    )


class ErrorBody(BaseModel):
    """The error part of every error response."""

    model_config = ConfigDict(defer_build=True)  # for the OpenAPI document: never validated

    code: str
    message: str
    details: object | None = None


class ErrorOut(BaseModel):
    """Every error response: ``{"error": {"code", "message", "details"?}}``."""

    model_config = ConfigDict(defer_build=True)

    error: ErrorBody


#: Users per import message: one message is one statement and one transaction.
IMPORT_MAX_USERS: Final = 10_000


def _our_hash(value: str) -> str:
    if not is_password_hash(value):
        raise ValueError("must be an Argon2id hash in PHC format ($argon2id$v=19$m=…,t=…,p=…$…)")
    return value


PasswordHash = Annotated[
    str, StringConstraints(max_length=PASSWORD_HASH_MAX), AfterValidator(_our_hash)
]


class ImportedUser(Request):
    """One user of an import: a password, or a hash already in our own format."""

    email: Email
    username: Username
    password: Password | None = None
    hashed_password: PasswordHash | None = None

    @model_validator(mode="after")
    def _one_secret(self) -> Self:
        if (self.password is None) == (self.hashed_password is None):
            raise ValueError("give exactly one of password and hashed_password")
        return self


class ImportMessage(Request):
    """The body of one message on the import queue."""

    users: Annotated[list[ImportedUser], Field(min_length=1, max_length=IMPORT_MAX_USERS)]


# The same message as plain data: the same field types (so the same validators), without a model
# instance per user. Validating 10,000 users this way is several times faster; ImportMessage
# stays the reference, and reports the errors.
@with_config(ConfigDict(extra="forbid", strict=True))
class ImportedUserData(TypedDict):
    """One validated user of an import message (see :func:`parse_import_message`)."""

    email: Email
    username: Username
    password: NotRequired[Password | None]
    hashed_password: NotRequired[PasswordHash | None]


Check: TypeAlias = Callable[[Any], Any]


def _split_checks(hint: Any) -> tuple[Any, tuple[Check, ...]]:
    """``hint`` without its ``AfterValidator`` functions, and those functions in their order.

    Without them the type is checked by pydantic-core alone; applying the functions afterwards
    to each valid value is what pydantic does. Only types whose constraints all come before the
    first ``AfterValidator`` can be split so (a constraint after one would apply to its result).
    """
    if get_origin(hint) is NotRequired:
        inner, inner_checks = _split_checks(get_args(hint)[0])
        return NotRequired[inner], inner_checks
    if get_origin(hint) in (Union, UnionType):
        options = [_split_checks(option) for option in get_args(hint)]
        found = [option_checks for _, option_checks in options if option_checks]
        if len(found) > 1:
            raise TypeError(f"cannot split {hint!r}: more than one option has validators")
        return Union[tuple(inner for inner, _ in options)], found[0] if found else ()  # noqa: UP007
    if get_origin(hint) is not Annotated:
        return hint, ()
    kept: list[Any] = []
    checks: list[Check] = []
    for item in hint.__metadata__:
        if isinstance(item, AfterValidator):
            checks.append(cast("Check", item.func))
        elif checks and not (isinstance(item, FieldInfo) and not item.metadata):
            raise TypeError(f"cannot split {hint!r}: {item!r} comes after a validator")
        else:
            kept.append(item)
    return (Annotated[(hint.__origin__, *kept)] if kept else hint.__origin__), tuple(checks)


@lru_cache(maxsize=1)
def _import_fast_path() -> tuple[TypeAdapter[Any], tuple[tuple[str, bool, tuple[Check, ...]], ...]]:
    """The adapter of the message with ImportedUserData's types minus their Python validators
    (all in pydantic-core), and per field: its name, whether required, its validators.

    Built on first use: most functions never import users.
    """
    fields: dict[str, Any] = {}
    checks: list[tuple[str, bool, tuple[Check, ...]]] = []
    for name, hint in get_type_hints(ImportedUserData, include_extras=True).items():
        fields[name], field_checks = _split_checks(hint)
        if field_checks:
            checks.append((name, get_origin(hint) is not NotRequired, field_checks))
    strict = with_config(ConfigDict(extra="forbid", strict=True))
    user = strict(cast("Any", TypedDict)("_ImportedUserFields", fields))
    users = Annotated[list[user], Field(min_length=1, max_length=IMPORT_MAX_USERS)]  # type: ignore[valid-type]
    body = strict(cast("Any", TypedDict)("_ImportBody", {"users": users}))
    return TypeAdapter(body), tuple(checks)


# Plain ASCII addresses one a line, each as _EMAIL wants it once normalized and with nothing that
# _single_line refuses, trimming or lower-casing would change: no space, no control character.
_EMAIL_LINE: Final = r"[^@\s\x00-\x1f\x7f]{1,64}@[^@\s.\x00-\x1f\x7f]+(?:\.[^@\s.\x00-\x1f\x7f]+)+"
_EMAIL_LINES: Final = re.compile(rf"(?:{_EMAIL_LINE}\n)*{_EMAIL_LINE}")


def _email_column(values: list[str]) -> list[str]:
    """``_single_line`` then ``_email`` on each value, in one regex pass when every value is a
    plain ASCII address (then its canonical spelling is its lower-case text); else value by
    value."""
    text = "\n".join(values)
    if text.isascii() and _EMAIL_LINES.fullmatch(text):
        return text.lower().split("\n")
    return [_email(_single_line(value)) for value in values]


def _hash_column(values: list[str]) -> list[str]:
    """``_our_hash`` on each value, in one regex pass when all are hashes."""
    return values if are_password_hashes(values) else list(map(_our_hash, values))


#: Field checks that have a form for a whole column, which gives what the checks would.
_COLUMN_CHECKS: Final[dict[tuple[Check, ...], Callable[[list[Any]], list[Any]]]] = {
    (_single_line, _email): _email_column,
    (_our_hash,): _hash_column,
}


def parse_import_message(body: str | bytes) -> list[ImportedUserData]:
    """The users of an import message body (JSON), validated and normalized as by ImportMessage.

    One pass over the JSON into plain dicts, checked by pydantic-core; then each field's Python
    validators run over the whole column at once (what pydantic would do value by value, without
    a call from pydantic-core per value). A message that fails any of it is validated again with
    :class:`ImportMessage`, whose ``ValidationError`` (the same as ever) is raised.
    """
    adapter, checks = _import_fast_path()
    users: list[dict[str, Any]] | None
    given_by: dict[str, int] = {}  # how many users give each optional field
    try:
        users = adapter.validate_json(body)["users"]
        for name, required, field_checks in checks:
            owners = users if required else [u for u in users if u.get(name) is not None]
            given_by[name] = len(owners)
            given = list(map(itemgetter(name), owners))
            values = given
            column = _COLUMN_CHECKS.get(field_checks)
            if column is not None:
                values = column(given)
            else:
                for check in field_checks:
                    values = list(map(check, values))
            if values != given:  # e.g. not yet normalized
                for user, value in zip(owners, values, strict=True):
                    user[name] = value
    except (PydanticValidationError, ValueError, AssertionError):  # what a validator may raise
        users = None
    # ImportedUser's model validator: exactly one secret (a missing key counts as null); when all
    # users give the same one and none the other, it holds without looking at each.
    if users is None or (
        sorted((given_by.get("password", 0), given_by.get("hashed_password", 0))) != [0, len(users)]
        and any(
            (user.get("password") is None) == (user.get("hashed_password") is None)
            for user in users
        )
    ):
        message = ImportMessage.model_validate_json(body)  # raises; a model is the reference
        return [cast("ImportedUserData", user.model_dump()) for user in message.users]
    return cast("list[ImportedUserData]", users)
