"""Request and response models (pydantic v2). Responses never carry password hashes or tokens."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Final, Generic, Literal, Self, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from blog.models import CONTENT_MAX, EMAIL_MAX, PASSWORD_HASH_MAX, TITLE_MAX, USERNAME_MAX
from blog.security import is_password_hash

T = TypeVar("T")

#: PostgreSQL integer ids: anything outside is simply not an id (and must not reach SQL).
ID_MAX: Final = 2**31 - 1
PASSWORD_MIN: Final = 8
# Argon2 accepts any length; the cap bounds the work one request can cause.
PASSWORD_MAX: Final = 256
SEARCH_MAX: Final = 200

_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s.]+(\.[^@\s.]+)+$")
_USERNAME = r"^[A-Za-z0-9](?:[A-Za-z0-9_.-]*[A-Za-z0-9])?$"


# Unicode's control characters (category Cc) and surrogates (Cs), which PostgreSQL or a reader
# would choke on; multi-line text may keep tab, line feed and carriage return.
_FORBIDDEN_SINGLE_LINE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_FORBIDDEN_MULTI_LINE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")


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
    normalized = value.strip().lower()
    if not _EMAIL.match(normalized):
        raise ValueError("must be an email address like name@example.com")
    return normalized


Email = Annotated[
    str,
    StringConstraints(min_length=3, max_length=EMAIL_MAX),
    AfterValidator(_single_line),
    AfterValidator(_email),
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
]
Title = Annotated[
    str,
    StringConstraints(min_length=1, max_length=TITLE_MAX),
    AfterValidator(_single_line),
    AfterValidator(_not_blank),
]
Content = Annotated[
    str,
    StringConstraints(min_length=1, max_length=CONTENT_MAX),
    AfterValidator(_multi_line),
    AfterValidator(_not_blank),
]
Id = Annotated[int, Field(ge=1, le=ID_MAX)]


class Request(BaseModel):
    """Strict request body: unknown fields and type coercions are refused."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Response(BaseModel):
    """Response body built from ORM rows."""

    model_config = ConfigDict(from_attributes=True)


class PartialUpdate(Request):
    """A PATCH body: only the given fields change; at least one, and none set to null."""

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


class UserUpdate(PartialUpdate):
    """A change to one's own account; only the given fields change."""

    email: Email | None = None
    username: Username | None = None
    password: Password | None = None


class UserOut(Response):
    """A user as the API shows it: never the password hash."""

    id: int
    email: str
    username: str
    is_active: bool
    is_admin: bool
    created_at: datetime
    updated_at: datetime


class TokenRequest(Request):
    """Sign-in: an email or a username, and the password."""

    login: Annotated[str, StringConstraints(min_length=1, max_length=EMAIL_MAX)] = Field(
        description="Email address or username"
    )
    password: Annotated[str, StringConstraints(min_length=1, max_length=PASSWORD_MAX)]


class TokenOut(BaseModel):
    """A signed, short-lived bearer token."""

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


class TransferRequest(Request):
    """Where to move a user's posts."""

    to_user_id: Id


class TransferOut(BaseModel):
    """How many posts moved."""

    moved: int


class Page(BaseModel, Generic[T]):
    """One page of a list and the total across pages."""

    items: list[T]
    total: int
    page: int
    page_size: int


class ErrorBody(BaseModel):
    """The error part of every error response."""

    code: str
    message: str
    details: object | None = None


class ErrorOut(BaseModel):
    """Every error response: ``{"error": {"code", "message", "details"?}}``."""

    error: ErrorBody


#: Users per import message: one message is one statement and one transaction.
IMPORT_MAX_USERS: Final = 10_000


def _our_hash(value: str) -> str:
    if not is_password_hash(value):
        raise ValueError("must be an Argon2id hash in PHC format ($argon2id$v=19$m=…,t=…,p=…$…)")
    return value


class ImportedUser(Request):
    """One user of an import: a password, or a hash already in our own format."""

    email: Email
    username: Username
    password: Password | None = None
    hashed_password: (
        Annotated[str, StringConstraints(max_length=PASSWORD_HASH_MAX), AfterValidator(_our_hash)]
        | None
    ) = None

    @model_validator(mode="after")
    def _one_secret(self) -> Self:
        if (self.password is None) == (self.hashed_password is None):
            raise ValueError("give exactly one of password and hashed_password")
        return self


class ImportMessage(Request):
    """The body of one message on the import queue."""

    users: Annotated[list[ImportedUser], Field(min_length=1, max_length=IMPORT_MAX_USERS)]
