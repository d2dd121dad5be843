"""The parts of the X-Ray emitter that need no Lambda process: the trace header, the daemon's
address, the datagram a document becomes, how an error is described (``test_tracing.py`` of the
integration tests sends them)."""

from __future__ import annotations

import json

import pytest
from pydantic import BaseModel, Field, ValidationError

from blog.tracing import (
    DATAGRAM_HEADER,
    DATAGRAM_MAX,
    DEFAULT_DAEMON,
    TraceHeader,
    daemon_address,
    describe,
    encode,
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("169.254.79.129:2000", ("169.254.79.129", 2000)),
        ("tcp:127.0.0.1:2000 udp:127.0.0.2:2001", ("127.0.0.2", 2001)),
        ("udp:127.0.0.2:2001 tcp:127.0.0.1:2000", ("127.0.0.2", 2001)),
        ("localhost:3000", ("localhost", 3000)),
        (None, DEFAULT_DAEMON),
        ("", DEFAULT_DAEMON),
        ("tcp:127.0.0.1:2000", DEFAULT_DAEMON),  # no UDP part
        ("127.0.0.1:port", DEFAULT_DAEMON),
    ],
)
def test_the_daemon_address_in_each_form_lambda_accepts(
    value: str | None, expected: tuple[str, int]
) -> None:
    assert daemon_address(value) == expected


def test_the_trace_header_gives_root_parent_and_sampling() -> None:
    header = TraceHeader.parse(
        "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1;Lineage=a:1"
    )
    assert header == TraceHeader("1-5759e988-bd862e3fe1be46a994272793", "53995c3f42cd8ad8", True)
    unsampled = TraceHeader.parse("Root=1-5759e988-bd862e3fe1be46a994272793;Parent=5399;Sampled=0")
    assert unsampled is not None and unsampled.sampled is False
    assert TraceHeader.parse("Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1") is None
    assert TraceHeader.parse("") is None


def test_a_document_is_a_datagram_after_the_daemons_header_line() -> None:
    document = {"type": "subsegment", "id": "53995c3f42cd8ad8", "name": "## lambda_handler"}
    data = encode(document)
    assert data.startswith(DATAGRAM_HEADER)
    assert json.loads(data[len(DATAGRAM_HEADER) :]) == document


def test_a_document_too_big_for_a_datagram_keeps_its_essential_fields_only() -> None:
    document = {
        "type": "subsegment",
        "id": "53995c3f42cd8ad8",
        "trace_id": "1-5759e988-bd862e3fe1be46a994272793",
        "parent_id": "0a1b2c3d4e5f6071",
        "name": "## lambda_handler",
        "start_time": 1.0,
        "end_time": 2.0,
        "fault": True,
        "annotations": {"Big": "é" * 70_000},
    }
    data = encode(document)
    assert len(data) <= DATAGRAM_MAX
    kept = json.loads(data[len(DATAGRAM_HEADER) :])
    assert kept == {key: value for key, value in document.items() if key != "annotations"}


def test_a_refused_value_is_described_by_where_and_why_not_by_the_value() -> None:
    class Signup(BaseModel):
        email: str = Field(max_length=10)

    # Given: pydantic's error for a value too long, whose text quotes the value
    with pytest.raises(ValidationError) as raised:
        Signup(email="ada.lovelace@example.com")
    assert "ada.lovelace@example.com" in str(raised.value)
    # When / Then: a subsegment says where and why only
    assert describe(raised.value) == "email: String should have at most 10 characters"
