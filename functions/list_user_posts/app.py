"""GET /users/{user_id}/posts: a user's published posts; drafts too for the author or an admin."""

from typing import Annotated

from aws_lambda_powertools.event_handler.openapi.params import Query

from blog import services
from blog.http import (
    PageNumber,
    PageSize,
    UserId,
    current_actor,
    error_responses,
    http_handler,
    make_app,
)
from blog.schemas import Page, PostOut

app = make_app()


@app.get(
    "/users/<user_id>/posts",
    operation_id="list_user_posts",
    summary="List a user's posts",
    tags=["posts"],
    responses=error_responses(401, 403, 404, 422),
)
def list_user_posts(
    user_id: UserId,
    include_drafts: Annotated[bool, Query(description="Author or admin only")] = False,
    page: PageNumber = 1,
    page_size: PageSize = None,
) -> Page[PostOut]:
    result = services.list_user_posts(
        user_id,
        actor=current_actor(app),
        include_drafts=include_drafts,
        page=page,
        page_size=page_size,
    )
    return Page[PostOut].model_validate(result, from_attributes=True)


lambda_handler = http_handler(app)
