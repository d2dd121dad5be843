"""POST /posts: a new draft authored by the caller."""

from typing import Annotated

from blog import services
from blog.http import created, current_actor, error_responses, http_handler, idempotent, make_app
from blog.schemas import PostCreate, PostOut

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Body

app = make_app()


@app.post(
    "/posts",
    operation_id="create_post",
    summary="Write a draft",
    tags=["posts"],
    responses=error_responses(401, 422, success=201, etag=True, idempotent=True),
)
@idempotent(app)
def create_post(body: Annotated[PostCreate, Body()]) -> Response[PostOut]:
    post = services.create_post(actor=current_actor(app), title=body.title, content=body.content)
    return created(PostOut.model_validate(post), f"/posts/{post.id}", version=post.version)


lambda_handler = http_handler(app)
