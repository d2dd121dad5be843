"""DELETE /posts/{post_id}: delete a post (author or admin)."""

from blog import services
from blog.http import (
    IfMatch,
    PostId,
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
    "/posts/<post_id>",
    operation_id="delete_post",
    summary="Delete a post",
    tags=["posts"],
    responses=error_responses(401, 403, 404, 412, 422, 428, no_content=True),
)
def delete_post(post_id: PostId, if_match: IfMatch = None) -> Response[None]:
    services.delete_post(post_id, actor=current_actor(app), if_match=precondition(if_match))
    return no_content()


lambda_handler = http_handler(app)
