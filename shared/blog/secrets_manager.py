"""Secrets Manager reads (the database credentials, the token signing key), cached per process.

Two ways to read a secret, one answer:

- Through the **AWS Parameters and Secrets Lambda Extension**, where the function has it
  (``SECRETS_EXTENSION=true``, which the template sets when ``SecretsExtensionLayerArn`` is
  given): an HTTP request to the extension on localhost, authenticated with the execution
  environment's session token. No AWS SDK is imported: a cold start's first read takes 5 ms
  instead of 175 ms (``python -m benchmarks.secret_read``). AWS recommends it for Lambda.
- Through the **AWS SDK** (Powertools' parameters utility, boto3) everywhere else: without the
  extension, and where the extension cannot be asked. That is a forced refresh (after the
  database refused the cached password: the extension would answer from its own cache, which may
  hold the password from before the rotation) and an environment without a session token in
  its variables (SnapStart gives its credentials through the container credentials endpoint
  instead, and the extension does not support it).

Either way the value is kept for ``max_age`` seconds in the process; a failure to read it is
:class:`SecretUnavailableError`, a 503 with ``Retry-After`` like a database outage. Values are
never logged.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from typing import Final
from urllib.parse import quote

from blog.config import get_settings
from blog.errors import UnavailableError
from blog.tracing import trace_aws_sdk

logger = logging.getLogger(__name__)

#: The header that carries the session token to the extension (its SSRF protection).
TOKEN_HEADER: Final = "X-Aws-Parameters-Secrets-Token"
#: An answer larger than this is not a secret (Secrets Manager's limit is 64 KiB).
MAX_ANSWER_BYTES: Final = 256 * 1024


class SecretUnavailableError(UnavailableError):
    """A secret could not be read from Secrets Manager (or the extension in front of it)."""

    default_message = "A credential store is unavailable; retry later"


@dataclass(frozen=True, slots=True)
class _Kept:
    value: str
    read_at: float  # time.monotonic()


_kept: dict[str, _Kept] = {}


def read_secret(arn: str, *, max_age: int, refresh: bool = False) -> str:
    """The secret's string, from the process's cache when younger than ``max_age`` seconds;
    ``refresh=True`` reads it from Secrets Manager itself (a rotation)."""
    if not refresh and is_kept(arn, max_age=max_age):
        return _kept[arn].value
    if refresh or not extension_usable():
        value = _through_sdk(arn)
    else:
        value = _through_extension(arn)
    _kept[arn] = _Kept(value, time.monotonic())
    return value


def is_kept(arn: str, *, max_age: int) -> bool:
    """Whether :func:`read_secret` would answer from the process's cache."""
    kept = _kept.get(arn)
    return kept is not None and time.monotonic() - kept.read_at < max_age


def extension_usable() -> bool:
    """Whether the function has the extension and it can be asked (a session token to show)."""
    return get_settings().secrets_extension and bool(os.environ.get("AWS_SESSION_TOKEN"))


def forget() -> None:
    """Drop every kept secret (a SnapStart restore, tests)."""
    _kept.clear()


def kept_count() -> int:
    """How many secrets the process keeps."""
    return len(_kept)


def _through_extension(arn: str) -> str:
    import http.client  # on first use: most functions read a secret once per environment

    settings = get_settings()
    connection = http.client.HTTPConnection(
        "localhost",
        settings.parameters_secrets_extension_http_port,
        timeout=settings.db_connect_timeout,
    )
    try:
        connection.request(
            "GET",
            f"/secretsmanager/get?secretId={quote(arn, safe='')}",
            headers={TOKEN_HEADER: os.environ.get("AWS_SESSION_TOKEN", "")},
        )
        answer = connection.getresponse()
        body = answer.read(MAX_ANSWER_BYTES + 1)
        status = answer.status
    except (OSError, http.client.HTTPException) as error:
        logger.warning("secrets extension unreachable", extra={"error_type": type(error).__name__})
        raise SecretUnavailableError from error
    finally:
        connection.close()
    if status != 200 or len(body) > MAX_ANSWER_BYTES:  # noqa: PLR2004 - HTTP OK
        logger.warning("secrets extension refused the read", extra={"status": status})
        raise SecretUnavailableError
    try:
        value = json.loads(body)["SecretString"]
    except (ValueError, KeyError, TypeError) as error:
        logger.warning("secrets extension answered without a SecretString")
        raise SecretUnavailableError from error
    if not isinstance(value, str):
        raise SecretUnavailableError
    return value


def _through_sdk(arn: str) -> str:
    # Imported here: it pulls in boto3, which local runs with a URL never need.
    from aws_lambda_powertools.utilities import parameters

    trace_aws_sdk()
    try:
        value = parameters.get_secret(arn, force_fetch=True, max_age=0)
    except parameters.GetParameterError as error:
        logger.warning("secret read failed", extra={"error_type": type(error.__cause__).__name__})
        raise SecretUnavailableError from error
    if not isinstance(value, str):  # a binary secret: not one of ours
        raise SecretUnavailableError
    return value
