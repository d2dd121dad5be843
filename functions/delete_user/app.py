"""DELETE /users/{user_id}: delete a user and all their posts (the user or an admin)."""

from blog import services
from blog.http import (
    IfMatch,
    UserId,
    current_actor,
    error_responses,
    http_handler,
    make_app,
    no_content,
    precondition,
)

from aws_lambda_powertools.event_handler import Response

app = make_app()


@app.delete(
    "/users/<user_id>",
    operation_id="delete_user",
    summary="Delete a user and their posts",
    tags=["users"],
    responses=error_responses(401, 403, 404, 412, 422, 428, no_content=True),
)
def delete_user(user_id: UserId, if_match: IfMatch = None) -> Response[None]:
    services.delete_user_cascade(user_id, actor=current_actor(app), if_match=precondition(if_match))
    return no_content()


lambda_handler = http_handler(app)
