"""Lambda authorizer (HTTP API, simple responses): verifies the bearer token, and only it.

No database is read here: the handler behind the route reads the caller's row in its own
transaction (still active, token version current, admin or not). So a database outage is the
handler's 503 with ``Retry-After``, not an authorizer failure (which API Gateway turns into a
500); a revoked token is refused at once, cached verdict or not; and a protected request opens
one database connection, not two.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import blog.snapstart  # noqa: F401 - registers the SnapStart runtime hooks (it is snapshotted too)

# Token verification alone: not blog.http, which brings the database layer and the resolver.
from blog.auth import bearer_token, verify_token
from blog.errors import AuthenticationError
from blog.telemetry import lambda_entry, logger

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

DENY: dict[str, Any] = {"isAuthorized": False}


@lambda_entry(with_metrics=False)
def lambda_handler(event: dict[str, Any], _context: LambdaContext) -> dict[str, Any]:
    token = bearer_token(event.get("headers"))
    if token is None:
        return DENY
    try:
        claims = verify_token(token)
    except AuthenticationError:
        logger.info("token refused")
        return DENY
    return {
        "isAuthorized": True,
        "context": {
            "user_id": claims.user_id,
            "token_version": claims.token_version,
            "expires_at": claims.expires_at,
        },
    }
