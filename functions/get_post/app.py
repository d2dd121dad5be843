"""GET /posts/{post_id}: published posts to anyone; drafts only to their author or an admin."""

from blog import services
from blog.http import PostId, error_responses, http_handler, make_app, ok, optional_actor
from blog.schemas import PostOut

from aws_lambda_powertools.event_handler import Response

app = make_app()


@app.get(
    "/posts/<post_id>",
    operation_id="get_post",
    summary="Get a post",
    tags=["posts"],
    responses=error_responses(401, 404, 422, etag=True),
)
def get_post(post_id: PostId) -> Response[PostOut]:
    post = services.get_post(post_id, actor=optional_actor(app))
    return ok(PostOut.model_validate(post), version=post.version)


lambda_handler = http_handler(app)
