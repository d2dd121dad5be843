"""DELETE /users/{user_id}: delete a user and all their posts (the user or an admin)."""

from aws_lambda_powertools.event_handler import Response

from blog import services
from blog.http import UserId, current_actor, error_responses, http_handler, make_app, no_content

app = make_app()


@app.delete(
    "/users/<user_id>",
    operation_id="delete_user",
    summary="Delete a user and their posts",
    tags=["users"],
    responses=error_responses(401, 403, 404, 422, no_content=True),
)
def delete_user(user_id: UserId) -> Response[None]:
    services.delete_user_cascade(user_id, actor=current_actor(app))
    return no_content()


lambda_handler = http_handler(app)
