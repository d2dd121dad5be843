"""POST /users/{user_id}/deactivate: the user can no longer sign in (the user or an admin)."""

from blog import services
from blog.http import UserId, current_actor, error_responses, http_handler, make_app
from blog.schemas import UserOut

app = make_app()


@app.post(
    "/users/<user_id>/deactivate",
    operation_id="deactivate_user",
    summary="Deactivate a user",
    tags=["users"],
    responses=error_responses(401, 403, 404, 422),
)
def deactivate_user(user_id: UserId) -> UserOut:
    return UserOut.model_validate(services.deactivate_user(user_id, actor=current_actor(app)))


lambda_handler = http_handler(app)
