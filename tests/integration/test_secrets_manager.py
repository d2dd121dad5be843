"""Secrets Manager reads (``blog.secrets_manager``): through the Parameters and Secrets Lambda
Extension where the function has it, else through the AWS SDK; cached for ``DB_SECRET_MAX_AGE``;
a failure is a 503 with ``Retry-After``, never a 500.

Secrets Manager is moto's. The extension is a stand-in on a local port that answers its
documented interface (``GET /secretsmanager/get?secretId=...`` with the session token in
``X-Aws-Parameters-Secrets-Token``) from moto's Secrets Manager, so what it serves is what
Secrets Manager holds; the database is the real test database.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from blog import auth, secrets_manager
from blog import db as layer_db
from blog.config import get_settings
from blog.errors import UnavailableError
from local.functions import REPO, functions, load_handler
from local.gateway import LambdaContext
from tests.conftest import reset_layer_caches

SESSION_TOKEN = "session-token-of-this-execution-environment"


@dataclass
class Extension:
    """The stand-in's state: what it was asked, and how it should answer."""

    port: int = 0
    requests: list[dict[str, Any]] = field(default_factory=list)
    status: int | None = None  # answer every request with this status instead
    body: bytes | None = None  # answer every request with this body instead


@pytest.fixture
def extension(aws: None) -> Iterator[Extension]:
    import boto3

    state = Extension()
    client = boto3.client("secretsmanager")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            url = urlsplit(self.path)
            query = parse_qs(url.query)
            token = self.headers.get("X-Aws-Parameters-Secrets-Token")
            state.requests.append({"path": url.path, "query": query, "token": token})
            status, body = 200, b""
            if state.status is not None or state.body is not None:
                status, body = state.status or 200, state.body or b""
            elif token != SESSION_TOKEN:
                status, body = 400, b"missing or invalid X-Aws-Parameters-Secrets-Token"
            elif url.path != "/secretsmanager/get" or "secretId" not in query:
                status, body = 400, b"bad request"
            else:
                try:
                    found = client.get_secret_value(SecretId=query["secretId"][0])
                except client.exceptions.ResourceNotFoundException:
                    status, body = 400, b"ResourceNotFoundException"
                else:
                    answer = {k: found[k] for k in ("ARN", "Name", "SecretString", "VersionId")}
                    body = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def layer(monkeypatch: pytest.MonkeyPatch, database_url: str) -> Iterator[pytest.MonkeyPatch]:
    """The layer's settings, changed by the test; caches reset before and after."""
    reset_layer_caches()
    yield monkeypatch
    monkeypatch.undo()
    reset_layer_caches()


def _database_secret(database_url: str, password: str = "not-used-by-trust-auth") -> str:
    import boto3

    url = make_url(database_url)
    secret = {
        "engine": "postgres", "username": url.username or "postgres", "password": password,
        "host": url.host, "port": url.port, "dbname": url.database,
    }  # fmt: skip
    client = boto3.client("secretsmanager")
    arn: str = client.create_secret(Name="blog/db", SecretString=json.dumps(secret))["ARN"]
    return arn


def _through_extension(
    layer: pytest.MonkeyPatch, extension: Extension, arn: str, *, secret: str = "DB_SECRET_ARN"
) -> None:
    """The layer set to read ``arn`` (named by the variable ``secret``) through the extension."""
    layer.delenv("DATABASE_URL" if secret == "DB_SECRET_ARN" else "JWT_SIGNING_KEY", raising=False)
    layer.setenv(secret, arn)
    layer.setenv("SECRETS_EXTENSION", "true")
    layer.setenv("PARAMETERS_SECRETS_EXTENSION_HTTP_PORT", str(extension.port))
    layer.setenv("AWS_SESSION_TOKEN", SESSION_TOKEN)
    reset_layer_caches()


def test_the_database_secret_is_read_through_the_extension_once_per_max_age(
    layer: pytest.MonkeyPatch, extension: Extension, database_url: str
) -> None:
    # Given: a function with the extension, its database credentials in Secrets Manager
    arn = _database_secret(database_url)
    _through_extension(layer, extension, arn)

    # When: two transactions run
    for _ in range(2):
        with layer_db.transaction() as conn:
            assert conn.scalar(text("SELECT current_database()")) == make_url(database_url).database

    # Then: the extension was asked once, for that secret, with the session token
    assert len(extension.requests) == 1
    asked = extension.requests[0]
    assert asked["path"] == "/secretsmanager/get"
    assert asked["query"] == {"secretId": [arn]}
    assert asked["token"] == SESSION_TOKEN
    # And: past max_age it is asked again
    layer.setenv("DB_SECRET_MAX_AGE", "0")
    get_settings.cache_clear()
    layer_db.get_credentials()
    assert len(extension.requests) == 2


def test_a_rotation_reads_secrets_manager_itself_not_the_extensions_cache(
    layer: pytest.MonkeyPatch, extension: Extension, database_url: str
) -> None:
    import boto3

    # Given: credentials read (and kept) through the extension
    arn = _database_secret(database_url)
    _through_extension(layer, extension, arn)
    assert layer_db.get_credentials().password == "not-used-by-trust-auth"
    asked = len(extension.requests)

    # When: the secret rotates and the layer refreshes (as after an authentication failure)
    secret = json.loads(
        boto3.client("secretsmanager").get_secret_value(SecretId=arn)["SecretString"]
    )
    boto3.client("secretsmanager").put_secret_value(
        SecretId=arn, SecretString=json.dumps({**secret, "password": "rotated"})
    )
    refreshed = layer_db.get_credentials(refresh=True)

    # Then: the new password came from Secrets Manager (the SDK), not from the extension, whose
    # cache may still hold the old one; and it is kept for the next reads
    assert refreshed.password == "rotated"
    assert len(extension.requests) == asked
    assert layer_db.get_credentials().password == "rotated"


def test_without_a_session_token_in_the_environment_the_sdk_reads_the_secret(
    layer: pytest.MonkeyPatch, extension: Extension, database_url: str
) -> None:
    # Given: the extension configured, but no AWS_SESSION_TOKEN (SnapStart gives its credentials
    # through the container credentials endpoint; the extension cannot be asked there)
    arn = _database_secret(database_url)
    _through_extension(layer, extension, arn)
    layer.delenv("AWS_SESSION_TOKEN")

    # When / Then: the credentials are read, through the SDK
    assert layer_db.get_credentials().database == make_url(database_url).database
    assert extension.requests == []


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (400, b"missing or invalid X-Aws-Parameters-Secrets-Token"),
        (500, b"internal error"),
        (200, b"not json"),
        (200, b'{"ARN": "arn", "SecretBinary": "AAAA"}'),
        (200, b"x" * (secrets_manager.MAX_ANSWER_BYTES + 1)),
    ],
    ids=["refused", "failed", "not-json", "no-secret-string", "oversized"],
)
def test_an_extension_that_cannot_answer_is_unavailable_not_an_internal_error(
    layer: pytest.MonkeyPatch,
    extension: Extension,
    database_url: str,
    caplog: pytest.LogCaptureFixture,
    status: int,
    body: bytes,
) -> None:
    arn = _database_secret(database_url, password="a-password-never-logged")
    _through_extension(layer, extension, arn)
    extension.status, extension.body = status, body

    with pytest.raises(secrets_manager.SecretUnavailableError) as raised:
        layer_db.get_credentials()

    assert isinstance(raised.value, UnavailableError)
    assert (raised.value.status, raised.value.retry_after) == (503, 5)
    assert "a-password-never-logged" not in caplog.text
    assert secrets_manager.kept_count() == 0  # nothing kept from a failed read


def test_an_unreachable_extension_or_secret_is_a_503_with_retry_after_from_the_api(
    layer: pytest.MonkeyPatch, extension: Extension, database_url: str
) -> None:
    # Given: the extension down (nothing listens on its port)
    arn = _database_secret(database_url)
    _through_extension(layer, extension, arn)
    layer.setenv("PARAMETERS_SECRETS_EXTENSION_HTTP_PORT", str(_closed_port()))
    get_settings.cache_clear()
    handler = load_handler(functions()["GetPostFunction"])
    event = json.loads((REPO / "events" / "get_post.json").read_text())

    # When: a request needs the database
    response = handler(event, LambdaContext("GetPostFunction"))

    # Then: 503 with Retry-After and the standard error body
    assert response["statusCode"] == 503
    assert response["headers"]["Retry-After"] == "5"
    assert json.loads(response["body"])["error"]["code"] == "service_unavailable"

    # And: without the extension, a secret Secrets Manager does not have is the same 503
    layer.setenv("SECRETS_EXTENSION", "false")
    layer.setenv("DB_SECRET_ARN", arn.replace("blog/db", "blog/missing"))
    reset_layer_caches()
    response = handler(event, LambdaContext("GetPostFunction"))
    assert response["statusCode"] == 503
    assert response["headers"]["Retry-After"] == "5"


def test_the_token_signing_key_is_read_through_the_extension(
    layer: pytest.MonkeyPatch, extension: Extension
) -> None:
    import boto3

    key = "a-signing-key-from-secrets-manager-0123456789"
    arn = boto3.client("secretsmanager").create_secret(Name="blog/jwt", SecretString=key)["ARN"]
    _through_extension(layer, extension, arn, secret="JWT_SECRET_ARN")

    token, _ = auth.issue_token(7, 0)
    assert auth.verify_token(token).user_id == 7
    assert auth.signing_key() == key.encode()
    assert [r["query"]["secretId"] for r in extension.requests] == [[arn]]


READ_THROUGH_THE_EXTENSION = """
import app
from blog import db, secrets_manager
early = db._early
if early is not None:
    early.thread.join(10)
kept_after_import = secrets_manager.kept_count()
event = json.load(open({event!r}))
response = app.lambda_handler(event, Context())
print(json.dumps({{"status": response["statusCode"], "kept_after_import": kept_after_import,
                  "early_taken": early is not None and db._early is None,
                  "sdk": sorted(m for m in sys.modules
                                if m == "boto3" or m.startswith(("boto3.", "botocore.")))}}))
"""


@pytest.mark.parametrize("initialization", ["on-demand", "provisioned-concurrency"])
def test_a_function_reading_its_secret_through_the_extension_never_imports_the_aws_sdk(
    extension: Extension, database_url: str, initialization: str
) -> None:
    from tests.unit.test_cold_path import run_function

    # Given: a fresh function process on Lambda, with the extension, started on demand (it
    # connects while the handler imports) or ahead of its first request (it must not)
    arn = _database_secret(database_url)

    # When: it answers a request that needs the database
    found = run_function(
        "get_post",
        READ_THROUGH_THE_EXTENSION.format(event=str(REPO / "events" / "get_post.json")),
        LAMBDA_TASK_ROOT=str(REPO / "functions" / "get_post"),
        AWS_LAMBDA_INITIALIZATION_TYPE=initialization,
        DATABASE_URL="",
        DB_SECRET_ARN=arn,
        SECRETS_EXTENSION="true",
        PARAMETERS_SECRETS_EXTENSION_HTTP_PORT=str(extension.port),
        AWS_SESSION_TOKEN=SESSION_TOKEN,
    )

    # Then: it read the secret and the database, and loaded no AWS SDK for it (Powertools imports
    # botocore's package itself, which is cheap, to register its user agent: nothing more)
    assert found["status"] == 404  # the sample event's post does not exist in the test database
    assert found["sdk"] == []
    assert len(extension.requests) == 1
    # And: on demand, the secret was read and the connection opened during the import, and the
    # first request used that connection; otherwise both waited for the request
    on_demand = initialization == "on-demand"
    assert found["kept_after_import"] == (1 if on_demand else 0)
    assert found["early_taken"] is on_demand


def _closed_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port
