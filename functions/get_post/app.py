"""GET /posts/{post_id}: published posts to anyone; drafts only to their author or an admin."""

from blog import services
from blog.http import PostId, error_responses, http_handler, make_app, optional_actor
from blog.schemas import PostOut

app = make_app()


@app.get(
    "/posts/<post_id>",
    operation_id="get_post",
    summary="Get a post",
    tags=["posts"],
    responses=error_responses(401, 404, 422),
)
def get_post(post_id: PostId) -> PostOut:
    return PostOut.model_validate(services.get_post(post_id, actor=optional_actor(app)))


lambda_handler = http_handler(app)
