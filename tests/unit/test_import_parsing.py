"""The import's fast paths agree with their references: message parsing, COPY text encoding."""

from __future__ import annotations

import json
from typing import Annotated, Any, NotRequired, get_args, get_origin, get_type_hints

import pytest
from pydantic import AfterValidator, StringConstraints, TypeAdapter, ValidationError

from blog import schemas
from blog.repositories import copy_columns, copy_text
from blog.schemas import (
    IMPORT_MAX_USERS,
    ImportedUser,
    ImportedUserData,
    ImportMessage,
    parse_import_message,
)
from blog.security import hash_password

HASH = hash_password("imported-password")


def _reference(body: str) -> list[dict[str, Any]] | list[tuple[Any, ...]]:
    """What ImportMessage makes of ``body``: the users, or the errors it raises."""
    try:
        return [u.model_dump() for u in ImportMessage.model_validate_json(body).users]
    except ValidationError as error:
        return [(e["type"], e["loc"], e["msg"]) for e in error.errors()]


def _fast(body: str) -> list[dict[str, Any]] | list[tuple[Any, ...]]:
    try:
        users = parse_import_message(body)
    except ValidationError as error:
        return [(e["type"], e["loc"], e["msg"]) for e in error.errors()]
    # ImportMessage dumps both secrets; the plain data leaves out what the message left out.
    return [{"password": None, "hashed_password": None, **u} for u in users]


VALID = [
    {"email": "a@example.com", "username": "alice", "password": "password-1"},
    {"email": "  Bob@Example.COM ", "username": "Bob_2", "hashed_password": HASH},
    {"email": "c@example.com", "username": "c.c-c", "password": "p" * 256, "hashed_password": None},
    {"email": "😀@exämple.org", "username": "emoji", "hashed_password": HASH, "password": None},
]

BODIES = [
    {"users": VALID},
    {"users": VALID * 3},  # repeated emails are the import's business, not the parser's
    {"users": []},
    {"users": [{**VALID[0], "password": "short"}]},
    {"users": [{**VALID[0], "hashed_password": HASH}]},  # both secrets
    {"users": [{"email": "d@example.com", "username": "dave"}]},  # no secret
    {"users": [{**VALID[0], "password": None}]},  # null secret only
    {"users": [{**VALID[1], "hashed_password": "$argon2i$v=19$m=1,t=1,p=1$abc$def"}]},
    {"users": [{**VALID[1], "hashed_password": HASH + "\n"}]},
    {"users": [{**VALID[0], "email": "not-an-email"}]},
    {"users": [{**VALID[0], "email": f"User{n}@Example.COM"} for n in range(3)]},  # one pass
    {"users": [{**VALID[0], "email": "a@example.com"}, {**VALID[0], "email": "a@@b.com"}]},
    {"users": [{**VALID[1], "hashed_password": HASH}, {**VALID[1], "hashed_password": HASH[:-1]}]},
    {"users": [{**VALID[0], "email": "tab\t@example.com"}]},
    {"users": [{**VALID[0], "email": "a@example.com\x1c"}]},  # str.strip() would eat this one
    {"users": [{**VALID[0], "email": " " * 250 + "a@example.com"}]},  # too long before stripping
    {"users": [{**VALID[0], "username": "-bad"}]},
    {"users": [{**VALID[0], "username": "ab"}]},
    {"users": [{**VALID[0], "password": "password\x00"}]},
    {"users": [{**VALID[0], "extra": 1}]},
    {"users": [{**VALID[0], "email": 5}]},  # strict: no coercion
    {"users": VALID, "more": True},
    {"users": "nope"},
    {"users": [VALID[0]] * (IMPORT_MAX_USERS + 1)},
    [],
    "users",
]


@pytest.mark.parametrize("body", [json.dumps(b) for b in BODIES], ids=range(len(BODIES)))
def test_parse_import_message_agrees_with_the_model(body: str) -> None:
    assert _fast(body) == _reference(body)


@pytest.mark.parametrize("body", ['{"users": [', "", "null", '{"users": [{"email": "\\ud800"}]}'])
def test_parse_import_message_agrees_on_broken_json(body: str) -> None:
    assert _fast(body) == _reference(body)


def test_a_valid_message_takes_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    class NoModel:
        @staticmethod
        def model_validate_json(body: str) -> None:
            raise AssertionError("validated twice")

    monkeypatch.setattr(schemas, "ImportMessage", NoModel)
    assert len(parse_import_message(json.dumps({"users": VALID}))) == len(VALID)


def test_parse_import_message_normalizes_as_the_model() -> None:
    users = parse_import_message(json.dumps({"users": VALID[1:2]}))
    assert users == [{"email": "bob@example.com", "username": "bob_2", "hashed_password": HASH}]


def test_the_plain_data_has_the_fields_and_types_of_the_model() -> None:
    # parse_import_message trusts ImportedUserData to validate as ImportedUser does: the same
    # field types, and _one_secret as the only model-level check (re-done by the function).
    model = get_type_hints(ImportedUser, include_extras=True)
    data = {
        name: get_args(hint)[0] if get_origin(hint) is NotRequired else hint
        for name, hint in get_type_hints(ImportedUserData, include_extras=True).items()
    }
    assert {name: model[name] for name in ImportedUser.model_fields} == data
    required = TypeAdapter(ImportedUserData).json_schema()["required"]
    assert required == ImportedUser.model_json_schema()["required"]
    assert set(ImportedUser.__pydantic_decorators__.model_validators) == {"_one_secret"}
    assert not ImportedUser.__pydantic_decorators__.field_validators


def test_the_fast_path_leaves_only_the_python_validators_to_run_afterwards() -> None:
    # parse_import_message runs them over each column itself, in the same order.
    for name, hint in get_type_hints(ImportedUserData, include_extras=True).items():
        raw, checks = schemas._split_checks(hint)
        assert "AfterValidator" not in repr(raw), name
        expected = [m.func for m in _metadata(hint) if isinstance(m, AfterValidator)]
        assert list(checks) == expected, name
        assert checks, name  # every field has some


def _metadata(hint: Any) -> list[Any]:
    while get_origin(hint) is not Annotated:
        hint = next(a for a in get_args(hint) if a is not type(None))
    return list(hint.__metadata__)


def test_a_constraint_after_a_validator_cannot_be_left_to_pydantic_core() -> None:
    late = Annotated[str, AfterValidator(str.strip), StringConstraints(max_length=3)]
    with pytest.raises(TypeError):
        schemas._split_checks(late)
    with pytest.raises(TypeError):  # two options, which validators for which value?
        schemas._split_checks(
            Annotated[str, AfterValidator(str.strip)]
            | Annotated[bytes, AfterValidator(bytes.strip)]
        )


EMAILS = [
    "a@example.com",
    "Mixed.Case+tag@Sub.Example.COM",
    "x" * 64 + "@example.com",
    "x" * 65 + "@example.com",
    " lead@example.com",
    "trail@example.com ",
    "a@example.com\x1c",
    "a@example.com\n",
    "a\x7f@example.com",
    "tab\t@example.com",
    "no-at.example.com",
    "two@@example.com",
    "a@b@example.com",
    "a@localhost",
    "a@example..com",
    "a@.example.com",
    "a@example.com.",
    "@example.com",
    "ü@example.com",
    "a@bücher.de",
    'quo"te,comma@example.com',
    "back\\slash@example.com",
]


def _per_value(check: Any, values: list[str]) -> list[str] | type[ValueError]:
    try:
        return [check(v) for v in values]
    except ValueError:
        return ValueError


def _column(column: Any, values: list[str]) -> list[str] | type[ValueError]:
    try:
        return list(column(values))
    except ValueError:
        return ValueError


@pytest.mark.parametrize("email", EMAILS)
def test_the_email_column_check_agrees_with_the_checks_value_by_value(email: str) -> None:
    def each(value: str) -> str:
        return schemas._email(schemas._single_line(value))

    for values in ([email], ["a@example.com", email], [email, "B@EXAMPLE.COM", email]):
        assert _column(schemas._email_column, values) == _per_value(each, values), values


def test_the_email_column_check_agrees_on_random_ascii_text() -> None:
    import random

    def each(value: str) -> str:
        return schemas._email(schemas._single_line(value))

    pick = random.Random(14)
    alphabet = 'aZ9.@ _-+\t\n\x1f\x7f\\"'
    for _ in range(3_000):
        values = [
            "".join(pick.choice(alphabet) for _ in range(pick.randint(0, 10)))
            for _ in range(pick.randint(1, 3))
        ]
        assert _column(schemas._email_column, values) == _per_value(each, values), values


@pytest.mark.parametrize(
    "bad", ["", HASH[:-1], HASH + "\n", "\n" + HASH, HASH.replace("argon2id", "argon2i"), "x"]
)
def test_the_hash_column_check_agrees_with_the_check_value_by_value(bad: str) -> None:
    for values in ([HASH], [HASH, HASH], [bad], [HASH, bad], [bad, HASH, HASH], []):
        expected = _per_value(schemas._our_hash, values)
        assert _column(schemas._hash_column, values) == expected, values


# --- copy_text -----------------------------------------------------------------------------------


def test_copy_text_writes_tab_separated_lines() -> None:
    assert copy_text([("1", "a@example.com", "alice"), ("2", "b", "c")]) == (
        b"1\ta@example.com\talice\n2\tb\tc\n"
    )
    assert copy_text([]) == b""


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        ("tab\there", b"tab\\there"),
        ("line\nfeed", b"line\\nfeed"),
        ("carriage\rreturn", b"carriage\\rreturn"),
        ("back\\slash", b"back\\\\slash"),
        ("\\N", b"\\\\N"),
        ("\\.", b"\\\\."),
        ("é😀", "é😀".encode()),
        (None, b"\\N"),
    ],
)
def test_copy_text_escapes_what_copy_would_read_otherwise(
    value: str | None, encoded: bytes
) -> None:
    assert copy_text([("x", value), ("y", "plain")]) == b"x\t" + encoded + b"\ny\tplain\n"


def test_copy_text_refuses_a_lone_surrogate() -> None:
    with pytest.raises(UnicodeEncodeError):
        copy_text([("\ud800",)])


@pytest.mark.parametrize(
    "value", ["plain", "tab\there", "line\nfeed", "cr\rlf", "back\\slash", "\\N", "é😀", None, ""]
)
def test_copy_columns_writes_what_copy_text_writes_for_the_rows_they_make(
    value: str | None,
) -> None:
    columns = (["1", "2", "3"], ["a@example.com", value, "c"], [value, "b", ""])
    rows = list(zip(*columns, strict=True))
    assert copy_columns(*columns) == copy_text(rows)
    assert copy_columns(["1"], [value]) == copy_text([("1", value)])
    assert copy_columns([], []) == copy_text([]) == b""
