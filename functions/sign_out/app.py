"""POST /users/{user_id}/sign-out: sign out everywhere; every token of the user is refused from
now on (the user or an admin)."""

from blog import services
from blog.http import (
    UserId,
    current_actor,
    error_responses,
    http_handler,
    idempotent,
    make_app,
    no_content,
)

from aws_lambda_powertools.event_handler import Response

app = make_app()


@app.post(
    "/users/<user_id>/sign-out",
    operation_id="sign_out",
    summary="Sign out everywhere",
    tags=["auth"],
    responses=error_responses(401, 403, 404, 422, no_content=True, idempotent=True),
)
@idempotent(app)
def sign_out(user_id: UserId) -> Response[None]:
    services.sign_out_everywhere(user_id, actor=current_actor(app))
    return no_content()


lambda_handler = http_handler(app)
