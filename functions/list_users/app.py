"""GET /users: active users by id, a page at a time, with the total; emails and roles only to
admins (and each user's own)."""

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
from blog.schemas import Page, PublicUserOut, UserOut, user_out

from aws_lambda_powertools.event_handler import Response

app = make_app()


@app.get(
    "/users",
    operation_id="list_users",
    summary="List active users",
    tags=["users"],
    responses=error_responses(400, 401, 422, paged=True),
)
def list_users(
    page: PageNumber = 1, page_size: PageSize = None, cursor: Cursor = None
) -> Response[Page[UserOut | PublicUserOut]]:
    result, viewer = services.list_active_users(
        page_request(page, page_size, cursor), actor=current_actor(app)
    )
    listed = Page[UserOut | PublicUserOut](
        items=[user_out(user, viewer) for user in result.items],
        total=result.total,
        total_exact=result.total_exact,
        page=result.page,
        page_size=result.page_size,
        next_cursor=result.next_cursor,
    )
    return page_response(app, listed)


lambda_handler = http_handler(app)
