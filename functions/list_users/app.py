"""GET /users: active users by id, a page at a time, with the total."""

from aws_lambda_powertools.event_handler import Response

from blog import services
from blog.http import (
    Cursor,
    PageNumber,
    PageSize,
    current_actor,
    error_responses,
    http_handler,
    make_app,
    page_request,
    page_response,
)
from blog.schemas import Page, UserOut

app = make_app()


@app.get(
    "/users",
    summary="List active users",
    tags=["users"],
    responses=error_responses(400, 401, 422, paged=True),
)
def list_users(
    page: PageNumber = 1, page_size: PageSize = None, cursor: Cursor = None
) -> Response[Page[UserOut]]:
    current_actor(app)
    result = services.list_active_users(page_request(page, page_size, cursor))
    return page_response(app, Page[UserOut].model_validate(result, from_attributes=True))


lambda_handler = http_handler(app)
