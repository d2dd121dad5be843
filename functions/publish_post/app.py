"""POST /posts/{post_id}/publish: publish a post (author or admin)."""

from blog import services
from blog.http import PostId, current_actor, error_responses, http_handler, make_app
from blog.schemas import PostOut

app = make_app()


@app.post(
    "/posts/<post_id>/publish",
    operation_id="publish_post",
    summary="Publish a post",
    tags=["posts"],
    responses=error_responses(401, 403, 404, 422),
)
def publish_post(post_id: PostId) -> PostOut:
    return PostOut.model_validate(services.publish_post(post_id, actor=current_actor(app)))


lambda_handler = http_handler(app)
