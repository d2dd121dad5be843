"""The SQS import function end to end: moto SQS, the real handler, the real PostgreSQL.

Messages are sent to a queue with a dead-letter queue, received as the Lambda service would,
turned into the SQS event, handled, and the successes deleted; failures become visible again.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from blog import db as layer_db
from blog import tables
from blog.repositories import UserRepository
from blog.security import hash_password, verify_password
from local.functions import REPO, load_module_from

REGION = "eu-west-1"
MAX_RECEIVES = 2


class Queues:
    """An import queue with its dead-letter queue, and the Lambda service's polling loop."""

    def __init__(self) -> None:
        import boto3

        self.sqs = boto3.client("sqs", region_name=REGION)
        self.dlq_url = self.sqs.create_queue(QueueName="import-dlq")["QueueUrl"]
        dlq_arn = self.sqs.get_queue_attributes(QueueUrl=self.dlq_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        self.url = self.sqs.create_queue(
            QueueName="import",
            Attributes={
                "VisibilityTimeout": "60",
                "RedrivePolicy": json.dumps(
                    {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(MAX_RECEIVES)}
                ),
            },
        )["QueueUrl"]
        self.arn = self.sqs.get_queue_attributes(QueueUrl=self.url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        self.handler = load_module_from(REPO / "functions" / "import_users").lambda_handler

    def send(self, body: str | dict[str, Any]) -> str:
        text = body if isinstance(body, str) else json.dumps(body)
        return str(self.sqs.send_message(QueueUrl=self.url, MessageBody=text)["MessageId"])

    def _event(self, messages: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "Records": [
                {
                    "messageId": m["MessageId"],
                    "receiptHandle": m["ReceiptHandle"],
                    "body": m["Body"],
                    "attributes": m.get("Attributes", {}),
                    "messageAttributes": {},
                    "md5OfBody": m["MD5OfBody"],
                    "eventSource": "aws:sqs",
                    "eventSourceARN": self.arn,
                    "awsRegion": REGION,
                }
                for m in messages
            ]
        }

    def poll_once(self) -> tuple[list[str], list[str]]:
        """Receive one batch, invoke the function, delete successes; (handled, failed) ids."""
        from local.gateway import LambdaContext

        messages = self.sqs.receive_message(
            QueueUrl=self.url, MaxNumberOfMessages=10, AttributeNames=["All"]
        ).get("Messages", [])
        if not messages:
            return [], []
        result = self.handler(self._event(messages), LambdaContext("ImportUsersFunction"))
        failed = [f["itemIdentifier"] for f in result["batchItemFailures"]]
        for message in messages:
            if message["MessageId"] in failed:
                # As if the visibility timeout ran out: the message can be received again.
                self.sqs.change_message_visibility(
                    QueueUrl=self.url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
                )
            else:
                self.sqs.delete_message(QueueUrl=self.url, ReceiptHandle=message["ReceiptHandle"])
        return [m["MessageId"] for m in messages], failed

    def dead_letters(self) -> list[str]:
        messages = self.sqs.receive_message(QueueUrl=self.dlq_url, MaxNumberOfMessages=10).get(
            "Messages", []
        )
        return [m["MessageId"] for m in messages]


@pytest.fixture
def queues(aws: None, db: None) -> Iterator[Queues]:
    yield Queues()


def user(name: str, **extra: Any) -> dict[str, Any]:
    return {"email": f"{name}@example.com", "username": name, **extra}


def stored_users() -> dict[str, tuple[str, str, object]]:
    with layer_db.transaction() as conn:
        rows = conn.execute(
            select(
                tables.users.c.email,
                tables.users.c.username,
                tables.users.c.hashed_password,
                tables.users.c.updated_at,
            )
        )
        return {r.email: (r.username, r.hashed_password, r.updated_at) for r in rows}


def test_valid_messages_are_upserted_and_deleted(queues: Queues) -> None:
    prehashed = hash_password("from-elsewhere")
    queues.send(
        {"users": [user("ann", password="password-1"), user("bob", hashed_password=prehashed)]}
    )
    queues.send({"users": [user("cid", password="password-2")]})
    handled, failed = queues.poll_once()
    assert (len(handled), failed) == (2, [])
    users = stored_users()
    assert set(users) == {"ann@example.com", "bob@example.com", "cid@example.com"}
    assert verify_password(users["ann@example.com"][1], "password-1")
    assert users["bob@example.com"][1] == prehashed
    assert queues.poll_once() == ([], [])  # nothing left on the queue


def test_poison_messages_fail_alone_and_reach_the_dead_letter_queue(
    queues: Queues, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a batch with good messages and three kinds of poison
    good = queues.send({"users": [user("good", password="password-1")]})
    bad_json = queues.send('{"users": [')
    invalid = queues.send({"users": [user("secretname", password="short")]})
    clash = queues.send(
        {
            "users": [
                user("first", password="password-1"),
                {"email": "other@example.com", "username": "first", "password": "password-2"},
            ]
        }
    )
    # When the function handles it
    handled, failed = queues.poll_once()
    # Then only the poison fails, and the good message is committed
    assert len(handled) == 4
    assert set(failed) == {bad_json, invalid, clash}
    assert good not in failed
    assert set(stored_users()) == {"good@example.com"}
    # Redelivered up to maxReceiveCount, the poison then moves to the dead-letter queue
    for _ in range(MAX_RECEIVES):
        queues.poll_once()
    assert set(queues.dead_letters()) == {bad_json, invalid, clash}
    assert set(stored_users()) == {"good@example.com"}
    # The logs name the messages but never the users' data
    logs = "\n".join(json.dumps(r.__dict__, default=str) for r in caplog.records)
    assert bad_json in logs and invalid in logs and clash in logs
    for secret in ("secretname", "other@example.com", "password-2", "short"):
        assert secret not in logs


def test_duplicate_delivery_leaves_the_database_as_one_delivery(queues: Queues) -> None:
    body = {
        "users": [
            user("once", password="password-1"),
            user("twice", hashed_password=hash_password("x" * 8)),
        ]
    }
    queues.send(body)
    queues.poll_once()
    after_first = stored_users()
    queues.send(body)  # SQS is at-least-once: the same message again
    queues.poll_once()
    assert stored_users() == after_first


def test_messages_touching_one_user_apply_in_message_order(queues: Queues) -> None:
    queues.send({"users": [user("same", password="password-1")]})
    queues.send(
        {"users": [{"email": "same@example.com", "username": "renamed", "password": "password-2"}]}
    )
    handled, failed = queues.poll_once()
    assert (len(handled), failed) == (2, [])
    username, hashed, _ = stored_users()["same@example.com"]
    assert username == "renamed"
    assert verify_password(hashed, "password-2")


def test_a_message_repeating_an_email_keeps_its_last_row(queues: Queues) -> None:
    queues.send(
        {
            "users": [
                user("rep", password="password-1"),
                user("other", password="password-2"),
                {"email": "REP@example.com", "username": "rep-last", "password": "password-3"},
            ]
        }
    )
    assert queues.poll_once()[1] == []
    users = stored_users()
    assert set(users) == {"rep@example.com", "other@example.com"}
    assert users["rep@example.com"][0] == "rep-last"
    assert verify_password(users["rep@example.com"][1], "password-3")


def test_unusual_but_valid_emails_arrive_in_their_canonical_spelling(queues: Queues) -> None:
    emails = ["😀@exämple.org", "back\\slash@example.com", 'quo"te,comma@example.com']
    queues.send(
        {
            "users": [
                {"email": email, "username": f"odd{n}", "password": "password-1"}
                for n, email in enumerate(emails)
            ]
        }
    )
    assert queues.poll_once()[1] == []
    # As sent, but for the Unicode domain, stored IDNA-encoded as every email is
    assert set(stored_users()) == {"😀@xn--exmple-cua.org", *emails[1:]}


def test_ten_thousand_users_in_one_message(queues: Queues) -> None:
    # 10,000 users with hashes are ~1.5 MB, over SQS's 1 MiB message limit, so this event is
    # built directly, as the Lambda service would deliver such a message.
    hashed = hash_password("shared-password")
    body = json.dumps({"users": [user(f"bulk{n}", hashed_password=hashed) for n in range(10_000)]})
    message = {"MessageId": str(uuid.uuid4()), "ReceiptHandle": "r", "Body": body, "MD5OfBody": ""}
    from local.gateway import LambdaContext

    result = queues.handler(queues._event([message]), LambdaContext("ImportUsersFunction"))
    assert result == {"batchItemFailures": []}
    with layer_db.transaction() as conn:
        from blog.repositories import UserRepository

        assert UserRepository(conn).count() == 10_000


def test_an_unreachable_database_fails_every_message_for_a_retry(
    aws: None, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.conftest import reset_layer_caches

    queues = Queues()
    name = f"retry{uuid.uuid4().hex[:8]}"
    sent = queues.send({"users": [user(name, password="password-1")]})
    monkeypatch.setenv("DATABASE_URL", "postgresql+pg8000://postgres@127.0.0.1:9/unreachable")
    monkeypatch.setenv("DB_CONNECT_TIMEOUT", "1")
    reset_layer_caches()
    try:
        assert queues.poll_once() == ([sent], [sent])
    finally:
        monkeypatch.undo()
        reset_layer_caches()
    # The database is back: the retried message goes through.
    assert queues.poll_once() == ([sent], [])
    with layer_db.transaction() as conn:
        stored = UserRepository(conn).get_by_username(name)
        assert stored is not None
        UserRepository(conn).delete(stored.id)
