"""PATCH /posts/{post_id}: edit title or content (author or admin)."""

from typing import Annotated

from blog import services
from blog.http import (
    IfMatch,
    PostId,
    current_actor,
    error_responses,
    http_handler,
    make_app,
    ok,
    precondition,
)
from blog.schemas import PostOut, PostUpdate

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Body

app = make_app()


@app.patch(
    "/posts/<post_id>",
    operation_id="update_post",
    summary="Edit a post",
    tags=["posts"],
    responses=error_responses(401, 403, 404, 412, 422, 428, etag=True),
)
def update_post(
    post_id: PostId, body: Annotated[PostUpdate, Body()], if_match: IfMatch = None
) -> Response[PostOut]:
    changes = body.model_dump(exclude_unset=True)
    post = services.update_post(
        post_id, actor=current_actor(app), if_match=precondition(if_match), **changes
    )
    return ok(PostOut.model_validate(post), version=post.version)


lambda_handler = http_handler(app)
