"""POST /posts/{post_id}/publish: publish a post (author or admin)."""

from blog import services
from blog.http import PostId, current_actor, error_responses, http_handler, idempotent, make_app, ok
from blog.schemas import PostOut

from aws_lambda_powertools.event_handler import Response

app = make_app()


@app.post(
    "/posts/<post_id>/publish",
    operation_id="publish_post",
    summary="Publish a post",
    tags=["posts"],
    responses=error_responses(401, 403, 404, 422, etag=True, idempotent=True),
)
@idempotent(app)
def publish_post(post_id: PostId) -> Response[PostOut]:
    post = services.publish_post(post_id, actor=current_actor(app))
    return ok(PostOut.model_validate(post), version=post.version)


lambda_handler = http_handler(app)
