"""POST /users/{user_id}/posts/transfer: move all of a user's posts to another, active, user
(admin); 409 ``user_inactive`` when the recipient is deactivated."""

from typing import Annotated

from blog import services
from blog.http import UserId, current_actor, error_responses, http_handler, idempotent, make_app
from blog.schemas import TransferOut, TransferRequest

from aws_lambda_powertools.event_handler.openapi.params import Body

app = make_app()


@app.post(
    "/users/<user_id>/posts/transfer",
    operation_id="transfer_posts",
    summary="Transfer a user's posts",
    tags=["posts"],
    responses=error_responses(401, 403, 404, 409, 422, idempotent=True),
)
@idempotent(app)
def transfer_posts(user_id: UserId, body: Annotated[TransferRequest, Body()]) -> TransferOut:
    moved = services.transfer_posts(
        from_user_id=user_id, to_user_id=body.to_user_id, actor=current_actor(app)
    )
    return TransferOut(moved=moved)


lambda_handler = http_handler(app)
