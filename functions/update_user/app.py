"""PATCH /users/{user_id}: change username, email or password (the user or an admin); a new email
or password needs the caller's ``current_password``."""

from typing import Annotated

from blog import services
from blog.http import (
    IfMatch,
    UserId,
    client_address,
    current_actor,
    error_responses,
    http_handler,
    make_app,
    ok,
    precondition,
)
from blog.schemas import UserOut, UserUpdate

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Body

app = make_app()


@app.patch(
    "/users/<user_id>",
    operation_id="update_user",
    summary="Change a user",
    tags=["users"],
    responses=error_responses(401, 403, 404, 409, 412, 422, 428, 429, etag=True),
)
def update_user(
    user_id: UserId, body: Annotated[UserUpdate, Body()], if_match: IfMatch = None
) -> Response[UserOut]:
    changes = body.model_dump(exclude_unset=True)
    user = services.update_user(
        user_id,
        actor=current_actor(app),
        if_match=precondition(if_match),
        client=services.sign_in_client(client_address(app)),
        **changes,
    )
    return ok(UserOut.model_validate(user), version=user.version)


lambda_handler = http_handler(app)
