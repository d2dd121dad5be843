"""The comparison app of ``make bench``: the same three routes as FastAPI + Mangum + SQLAlchemy
asyncio + asyncpg, NullPool over TLS, packaged as one Lambda function. Never part of the layer.

Configured like the layer: ``DATABASE_URL`` (any driver name; asyncpg is used), ``DB_SSLMODE``
(disable, require, verify-full) and ``DB_SSL_CA_FILE``; the TLS context is built once, the
statement timeout travels in the startup packet, and Mangum's lifespan cycle (run on every
invocation by default) is off. The callers' identity comes from the Lambda authorizer's context.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request, Response
from mangum import Mangum
from pydantic import BaseModel, ConfigDict, StringConstraints
from sqlalchemy import Boolean, DateTime, ForeignKey, Integer, String, Text, func, or_, select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.pool import NullPool

PAGE_SIZE_DEFAULT = 20
PAGE_SIZE_MAX = 100
ID_MAX = 2**31 - 1


def _ssl_context() -> ssl.SSLContext | bool:
    mode = os.environ.get("DB_SSLMODE", "verify-full")
    if mode == "disable":
        return False
    context = ssl.create_default_context(cafile=os.environ.get("DB_SSL_CA_FILE") or None)
    if mode == "require":
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _engine_url() -> str:
    url = make_url(os.environ["DATABASE_URL"]).set(drivername="postgresql+asyncpg")
    return url.render_as_string(hide_password=False)


engine = create_async_engine(
    _engine_url(),
    poolclass=NullPool,
    connect_args={
        "ssl": _ssl_context(),
        "timeout": 5,
        "server_settings": {"statement_timeout": "10000", "application_name": "bench-fastapi"},
    },
)
sessions = async_sessionmaker(engine, expire_on_commit=False)


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(255))
    username: Mapped[str] = mapped_column(String(50))
    hashed_password: Mapped[str] = mapped_column(String(255))
    is_active: Mapped[bool] = mapped_column(Boolean)
    status: Mapped[str] = mapped_column(String(20))
    is_admin: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Post(Base):
    __tablename__ = "posts"
    __mapper_args__ = {"eager_defaults": True}  # noqa: RUF012

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    content: Mapped[str] = mapped_column(Text)
    published: Mapped[bool] = mapped_column(Boolean, server_default="false")
    author_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    email: str
    username: str
    is_active: bool
    is_admin: bool
    created_at: datetime
    updated_at: datetime


class PostOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    title: str
    content: str
    published: bool
    author_id: int
    created_at: datetime
    updated_at: datetime


class PostPage(BaseModel):
    items: list[PostOut]
    total: int
    page: int
    page_size: int


class PostCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    title: Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"\S")]
    content: Annotated[str, StringConstraints(min_length=1, max_length=100_000, pattern=r"\S")]


app = FastAPI(title="bench comparison", openapi_url=None, docs_url=None, redoc_url=None)


async def session() -> AsyncIterator[AsyncSession]:
    async with sessions() as db, db.begin():
        yield db


Db = Annotated[AsyncSession, Depends(session)]


def actor_id(request: Request) -> int:
    """The caller's user id, from the Lambda authorizer's context; 401 without one."""
    event = request.scope.get("aws.event") or {}
    context = ((event.get("requestContext") or {}).get("authorizer") or {}).get("lambda") or {}
    try:
        return int(context["user_id"])
    except (KeyError, TypeError, ValueError):
        raise HTTPException(status_code=401, detail="Sign in first") from None


Actor = Annotated[int, Depends(actor_id)]


@app.get("/users/{user_id}", response_model=UserOut)
async def get_user(user_id: Annotated[int, Path(ge=1, le=ID_MAX)], db: Db, _: Actor) -> User:
    user = await db.get(User, user_id)
    if user is None:
        raise HTTPException(status_code=404, detail=f"User {user_id} not found")
    return user


@app.get("/posts", response_model=PostPage)
async def list_posts(
    db: Db,
    q: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    page_size: Annotated[int | None, Query(ge=1, le=1000)] = None,
) -> PostPage:
    size = min(page_size or PAGE_SIZE_DEFAULT, PAGE_SIZE_MAX)
    stmt = select(Post, func.count().over().label("total")).where(Post.published.is_(True))
    if q:
        escaped = q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        pattern = f"%{escaped}%"
        stmt = stmt.where(
            or_(Post.title.ilike(pattern, escape="\\"), Post.content.ilike(pattern, escape="\\"))
        )
    stmt = stmt.order_by(Post.created_at.desc(), Post.id.desc())
    rows = (await db.execute(stmt.offset((page - 1) * size).limit(size))).all()
    return PostPage(
        items=[PostOut.model_validate(row[0]) for row in rows],
        total=int(rows[0].total) if rows else 0,
        page=page,
        page_size=size,
    )


@app.post("/posts", response_model=PostOut, status_code=201)
async def create_post(body: PostCreate, db: Db, author: Actor, response: Response) -> Post:
    post = Post(title=body.title, content=body.content, author_id=author)
    db.add(post)
    await db.flush()
    response.headers["Location"] = f"/posts/{post.id}"
    return post


lambda_handler = Mangum(app, lifespan="off")
