"""GET /posts: published posts, newest first; ``q`` searches titles and contents."""

from typing import Annotated

from aws_lambda_powertools.event_handler.openapi.params import Query

from blog import services
from blog.http import PageNumber, PageSize, error_responses, http_handler, make_app
from blog.schemas import SEARCH_MAX, Page, PostOut

app = make_app()


@app.get(
    "/posts",
    operation_id="list_posts",
    summary="List published posts",
    tags=["posts"],
    responses=error_responses(422),
)
def list_posts(
    q: Annotated[str | None, Query(min_length=1, max_length=SEARCH_MAX)] = None,
    page: PageNumber = 1,
    page_size: PageSize = None,
) -> Page[PostOut]:
    result = services.list_published_posts(page=page, page_size=page_size, query=q)
    return Page[PostOut].model_validate(result, from_attributes=True)


lambda_handler = http_handler(app)
