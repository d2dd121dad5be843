"""Lambda authorizer (HTTP API, simple responses): verifies the bearer token.

Passes ``user_id`` and ``is_admin`` to the handlers. The user must still exist and be active,
and admin rights come from the database, so deactivation or demotion takes effect within the
authorizer's cache TTL.
"""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from blog import services
from blog.auth import bearer_token, verify_token
from blog.errors import AuthenticationError
from blog.http import logger, tracer

DENY: dict[str, Any] = {"isAuthorized": False}


@tracer.capture_lambda_handler(capture_response=False)
@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], _context: LambdaContext) -> dict[str, Any]:
    token = bearer_token(event.get("headers"))
    if token is None:
        return DENY
    try:
        actor = services.actor_for(verify_token(token).user_id)
    except AuthenticationError:
        logger.info("token refused")
        return DENY
    return {
        "isAuthorized": True,
        "context": {"user_id": actor.user_id, "is_admin": actor.is_admin},
    }
