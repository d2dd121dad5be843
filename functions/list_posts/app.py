"""GET /posts: published posts, newest first; ``q`` searches titles and contents."""

from typing import Annotated

from blog import services
from blog.http import (
    Cursor,
    PageNumber,
    PageSize,
    error_responses,
    http_handler,
    make_app,
    page_request,
    page_response,
)
from blog.schemas import SEARCH_MAX, SEARCH_MIN, Page, PostListItem

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Query

app = make_app()


@app.get(
    "/posts",
    operation_id="list_posts",
    summary="List published posts",
    tags=["posts"],
    responses=error_responses(400, 422, paged=True),
)
def list_posts(
    q: Annotated[
        str | None,
        Query(
            min_length=SEARCH_MIN,
            max_length=SEARCH_MAX,
            description="Only posts whose title or content contains this text, ignoring case "
            "(%, _ and \\ match themselves). It must hold at least three letters or digits in a "
            "row (a trigram, which the search index needs); otherwise 422",
        ),
    ] = None,
    page: PageNumber = 1,
    page_size: PageSize = None,
    cursor: Cursor = None,
) -> Response[Page[PostListItem]]:
    result = services.list_published_posts(page_request(page, page_size, cursor), query=q)
    return page_response(app, Page[PostListItem].model_validate(result, from_attributes=True))


lambda_handler = http_handler(app)
