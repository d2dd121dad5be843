"""GET /users/{user_id}: one user; their email and role only to themselves and admins."""

from blog import services
from blog.http import UserId, current_actor, error_responses, http_handler, make_app, ok
from blog.schemas import PublicUserOut, UserOut, user_out

from aws_lambda_powertools.event_handler import Response

app = make_app()


@app.get(
    "/users/<user_id>",
    operation_id="get_user",
    summary="Get a user",
    tags=["users"],
    responses=error_responses(401, 404, 422, etag=True),
)
def get_user(user_id: UserId) -> Response[UserOut | PublicUserOut]:
    user, viewer = services.get_user(user_id, actor=current_actor(app))
    return ok(user_out(user, viewer), version=user.version)


lambda_handler = http_handler(app)
