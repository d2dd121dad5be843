"""POST /users/{user_id}/deactivate: the user can no longer sign in (the user or an admin)."""

from blog import services
from blog.http import UserId, current_actor, error_responses, http_handler, idempotent, make_app, ok
from blog.schemas import UserOut

from aws_lambda_powertools.event_handler import Response

app = make_app()


@app.post(
    "/users/<user_id>/deactivate",
    operation_id="deactivate_user",
    summary="Deactivate a user",
    tags=["users"],
    responses=error_responses(401, 403, 404, 422, etag=True, idempotent=True),
)
@idempotent(app)
def deactivate_user(user_id: UserId) -> Response[UserOut]:
    user = services.deactivate_user(user_id, actor=current_actor(app))
    return ok(UserOut.model_validate(user), version=user.version)


lambda_handler = http_handler(app)
