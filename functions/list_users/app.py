"""GET /users: active users, a page at a time, with the total."""

from blog import services
from blog.http import PageNumber, PageSize, current_actor, error_responses, http_handler, make_app
from blog.schemas import Page, UserOut

app = make_app()


@app.get(
    "/users",
    operation_id="list_users",
    summary="List active users",
    tags=["users"],
    responses=error_responses(401, 422),
)
def list_users(page: PageNumber = 1, page_size: PageSize = None) -> Page[UserOut]:
    current_actor(app)
    result = services.list_active_users(page=page, page_size=page_size)
    return Page[UserOut].model_validate(result, from_attributes=True)


lambda_handler = http_handler(app)
