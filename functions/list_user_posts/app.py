"""GET /users/{user_id}/posts: a user's published posts; drafts too for the author or an admin."""

from typing import Annotated

from blog import services
from blog.http import (
    Cursor,
    PageNumber,
    PageSize,
    UserId,
    current_actor,
    error_responses,
    http_handler,
    make_app,
    page_request,
    page_response,
)
from blog.schemas import Page, PostListItem

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Query

app = make_app()


@app.get(
    "/users/<user_id>/posts",
    operation_id="list_user_posts",
    summary="List a user's posts",
    tags=["posts"],
    responses=error_responses(400, 401, 403, 404, 422, paged=True),
)
def list_user_posts(
    user_id: UserId,
    include_drafts: Annotated[bool, Query(description="Author or admin only")] = False,
    page: PageNumber = 1,
    page_size: PageSize = None,
    cursor: Cursor = None,
) -> Response[Page[PostListItem]]:
    result = services.list_user_posts(
        user_id,
        actor=current_actor(app),
        include_drafts=include_drafts,
        request=page_request(page, page_size, cursor),
    )
    return page_response(app, Page[PostListItem].model_validate(result, from_attributes=True))


lambda_handler = http_handler(app)
