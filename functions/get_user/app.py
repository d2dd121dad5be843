"""GET /users/{user_id}: one user; their email and role only to themselves and admins."""

from blog import services
from blog.http import UserId, current_actor, error_responses, http_handler, make_app
from blog.schemas import PublicUserOut, UserOut, user_out

app = make_app()


@app.get(
    "/users/<user_id>",
    summary="Get a user",
    tags=["users"],
    responses=error_responses(401, 404, 422),
)
def get_user(user_id: UserId) -> UserOut | PublicUserOut:
    user, viewer = services.get_user(user_id, actor=current_actor(app))
    return user_out(user, viewer)


lambda_handler = http_handler(app)
