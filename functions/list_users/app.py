"""GET /users: active users, a page at a time, with the total; emails only to admins (and each
user's own)."""

from blog import services
from blog.http import PageNumber, PageSize, current_actor, error_responses, http_handler, make_app
from blog.schemas import Page, PublicUserOut, UserOut, user_out

app = make_app()


@app.get("/users", summary="List active users", tags=["users"], responses=error_responses(401, 422))
def list_users(page: PageNumber = 1, page_size: PageSize = None) -> Page[UserOut | PublicUserOut]:
    result, viewer = services.list_active_users(
        actor=current_actor(app), page=page, page_size=page_size
    )
    return Page[UserOut | PublicUserOut](
        items=[user_out(user, viewer) for user in result.items],
        total=result.total,
        page=result.page,
        page_size=result.page_size,
    )


lambda_handler = http_handler(app)
