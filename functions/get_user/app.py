"""GET /users/{user_id}: one user (never their password hash)."""

from blog import services
from blog.http import UserId, current_actor, error_responses, http_handler, make_app
from blog.schemas import UserOut

app = make_app()


@app.get(
    "/users/<user_id>",
    operation_id="get_user",
    summary="Get a user",
    tags=["users"],
    responses=error_responses(401, 404, 422),
)
def get_user(user_id: UserId) -> UserOut:
    current_actor(app)
    return UserOut.model_validate(services.get_user(user_id))


lambda_handler = http_handler(app)
