"""POST /users: register; with ``welcome_post: true`` the welcome post is created atomically."""

from typing import Annotated

from blog import services
from blog.http import created, error_responses, http_handler, idempotent, make_app
from blog.schemas import UserCreate, UserOut

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Body

app = make_app()


@app.post(
    "/users",
    operation_id="register_user",
    summary="Register a user",
    tags=["users"],
    responses=error_responses(409, 422, success=201, etag=True, idempotent=True),
)
@idempotent(app)
def register_user(body: Annotated[UserCreate, Body()]) -> Response[UserOut]:
    user = services.register(**body.model_dump())
    return created(UserOut.model_validate(user), f"/users/{user.id}", version=user.version)


lambda_handler = http_handler(app)
