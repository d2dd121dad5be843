"""Use cases. Each opens its own unit of work, so each is one transaction (retried on conflict).

Services are the only callers of :func:`blog.db.transaction`; handlers call services. Rows come
back as the repositories' immutable records (:mod:`blog.records`), read whole in the use case's
transaction.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, TypeAlias

from blog.config import get_settings
from blog.db import retry_on_conflict, transaction
from blog.domain import normalize_email, normalize_username
from blog.errors import (
    AuthenticationError,
    CurrentPasswordError,
    ForbiddenError,
    IdempotencyKeyReusedError,
    InactiveUserError,
    NotFoundError,
    PreconditionFailedError,
    PreconditionRequiredError,
    TooManyAttemptsError,
    ValidationError,
)
from blog.idempotency import IdempotentRequest, StoredReply
from blog.preconditions import Precondition, etag
from blog.repositories import (
    IdempotencyKeyRepository,
    Page,
    PageRequest,
    PostRepository,
    SignInFailureRepository,
    SignInPause,
    SlowingRule,
    UserRepository,
)
from blog.security import dummy_hash, hash_password, needs_rehash, verify_password

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from blog.records import PostRecord, UserRecord

WELCOME_CONTENT: Final = "Thanks for joining. This is your first post: edit it or write a new one."


@dataclass(frozen=True, slots=True)
class Actor:
    """Who is asking: every write checks it."""

    user_id: int | None
    is_admin: bool = False

    def may_act_for(self, user_id: int) -> bool:
        """Whether the actor may change what belongs to ``user_id``."""
        return self.is_admin or self.user_id == user_id


#: Internal callers (bulk import, maintenance) act with full rights.
SYSTEM: Final = Actor(user_id=None, is_admin=True)


@dataclass(frozen=True, slots=True)
class Caller:
    """Who a verified token says is asking. Each use case reads their row in its own
    transaction (:func:`_resolve`): the user must still be active and the token's version
    current, and admin rights come from the row, so revocation takes effect at once."""

    user_id: int
    token_version: int


#: Who asks for a use case: a token's bearer (checked against their row), or an actor already
#: known (internal callers, tests).
Requester: TypeAlias = Actor | Caller


def _resolve(connection: Connection, requester: Requester) -> Actor:
    """The actor behind ``requester``, read in the use case's transaction; 401 if the token's
    user is gone, deactivated, or has revoked it since (a newer token version)."""
    if isinstance(requester, Actor):
        return requester
    return _actor(UserRepository(connection).get(requester.user_id), requester)


def _actor(user: UserRecord | None, requester: Caller) -> Actor:
    if user is None or not user.is_active or user.token_version != requester.token_version:
        raise AuthenticationError("Invalid or expired token")
    return Actor(user_id=user.id, is_admin=user.is_admin)


def _resolve_with_user(
    connection: Connection, requester: Requester, user_id: int
) -> tuple[Actor, UserRecord | None]:
    """The actor behind ``requester`` and the user ``user_id`` (None if missing), read together
    in one statement when the requester is a token's caller."""
    repo = UserRepository(connection)
    if isinstance(requester, Actor):
        return requester, repo.get(user_id)
    found = repo.get_by_ids((requester.user_id, user_id))
    return _actor(found.get(requester.user_id), requester), found.get(user_id)


def _require(actor: Actor, owner_id: int) -> None:
    if not actor.may_act_for(owner_id):
        raise ForbiddenError()


def _check_version(
    row: UserRecord | PostRecord, if_match: Precondition | None, *, actor: Actor, owner_id: int
) -> None:
    """``If-Match`` against the locked row: 412 when it names another version.

    Without one, only the owner may write (last write wins for their own edits); an admin
    changing someone else's user or post must say which version they read (428), so an edit
    made meanwhile by the owner is never overwritten unseen.
    """
    if if_match is None:
        if actor.user_id != owner_id:
            raise PreconditionRequiredError()
        return
    if not if_match.matches(row.version):
        raise PreconditionFailedError(details={"etag": etag(row.version)})


@retry_on_conflict()
def register_user(*, email: str, username: str, password: str) -> UserRecord:
    """Create a user. A taken email or username raises ``DuplicateError``.

    No look-up first: the unique indexes decide, so two racing registrations cannot both win.
    """
    hashed = hash_password(password)  # outside the transaction: no connection held while hashing
    with transaction() as connection:
        return UserRepository(connection).create(
            email=email, username=username, hashed_password=hashed
        )


def welcome_post_values(user: UserRecord) -> dict[str, Any]:
    """Title and content of the welcome post for ``user``."""
    return {"title": f"Welcome, {user.username}!", "content": WELCOME_CONTENT, "published": True}


@retry_on_conflict()
def create_user_with_welcome_post(
    *, email: str, username: str, password: str
) -> tuple[UserRecord, PostRecord]:
    """Create a user and their published welcome post atomically: both or neither."""
    hashed = hash_password(password)
    with transaction() as connection:
        user = UserRepository(connection).create(
            email=email, username=username, hashed_password=hashed
        )
        post = PostRepository(connection).create(author_id=user.id, **welcome_post_values(user))
        return user, post


@retry_on_conflict()
def transfer_posts(*, from_user_id: int, to_user_id: int, actor: Requester) -> int:
    """Move every post of one user to another, active, user (admins only); how many moved."""
    with transaction() as connection:
        if not _resolve(connection, actor).is_admin:
            raise ForbiddenError()
        if from_user_id == to_user_id:
            raise ValidationError(
                "Cannot transfer posts to the same user", details={"field": "to_user_id"}
            )
        users = UserRepository(connection)
        # Both rows are locked (in id order, so two opposite transfers cannot deadlock each other),
        # which keeps either user from being deleted until the move commits.
        locked = {}
        for user_id in sorted((from_user_id, to_user_id)):
            locked[user_id] = users.lock(user_id, key_share=True)
            if locked[user_id] is None:
                raise NotFoundError(f"User {user_id} not found", details={"user_id": user_id})
        recipient = locked[to_user_id]
        if recipient is not None and not recipient.is_active:
            # Posts of a deactivated account vanish from its lists; moving posts *off* one is
            # what transfers are for, moving them onto one would hide them.
            raise InactiveUserError(
                f"User {to_user_id} is deactivated", details={"field": "to_user_id"}
            )
        return PostRepository(connection).transfer(from_user_id, to_user_id)


@retry_on_conflict()
def delete_user_cascade(
    user_id: int, *, actor: Requester, if_match: Precondition | None = None
) -> int:
    """Delete a user and, by ``ON DELETE CASCADE``, all their posts; returns how many posts went.

    ``if_match``: the version the caller read (see :func:`_check_version`).
    """
    with transaction() as connection:
        who = _resolve(connection, actor)
        _require(who, user_id)
        posts = PostRepository(connection)
        users = UserRepository(connection)
        user = users.lock(user_id)
        if user is None:
            raise NotFoundError(f"User {user_id} not found")
        _check_version(user, if_match, actor=who, owner_id=user_id)
        post_count = posts.count_by_author(user_id)
        users.delete(user_id)
        return post_count


@retry_on_conflict()
def publish_post(post_id: int, *, actor: Requester) -> PostRecord:
    """Publish a post (its author or an admin); ``NotFoundError`` when there is no such post."""
    with transaction() as connection:
        posts = PostRepository(connection)
        _owned_post(posts, post_id, _resolve(connection, actor))
        published = posts.publish(post_id)
        assert published is not None  # locked above, so it still exists
        return published


@retry_on_conflict()
def import_users(rows: Iterable[Mapping[str, Any]]) -> list[int]:
    """Upsert users on email in one transaction (``email``, ``username``, ``hashed_password``).

    The rows are streamed with ``COPY`` and applied by one statement (see
    :meth:`UserRepository.copy_upsert`); the ids come back in first-seen order.
    """
    with transaction() as connection:
        return UserRepository(connection).copy_upsert(rows)


def import_user_batch(users: Sequence[Mapping[str, Any]]) -> list[int]:
    """Import users given with a ``password`` or an already made ``hashed_password``.

    Idempotent: a user whose stored hash already matches the given password keeps it, so the
    same batch applied twice leaves the database as one application did.
    """
    plain = [u for u in users if u.get("password") is not None]
    if not plain:
        return import_users(users)  # the rows as they are: the other keys are not read
    with transaction() as connection:
        existing = UserRepository(connection).hashes_by_email(u["email"] for u in plain)
    rows: list[Mapping[str, Any]] = []
    for user in users:
        if user.get("hashed_password") is not None:
            rows.append(user)  # a row as it is: the other keys are not read
            continue
        stored = existing.get(normalize_email(user["email"]))
        password = user["password"]
        hashed = stored if stored and verify_password(stored, password) else hash_password(password)
        rows.append(
            {"email": user["email"], "username": user["username"], "hashed_password": hashed}
        )
    return import_users(rows)


# --- reads and edits used by the HTTP API ------------------------------------------------------


#: The client key of a request whose address is missing or unreadable (direct invocations).
UNKNOWN_CLIENT: Final = "unknown"
#: Longest a sign-in attempt holds its client's turn (the function's timeout): if it never ends
#: (the function stopped), the client's next attempt waits at most this long.
SIGN_IN_ATTEMPT_HOLD_S: Final = 10


def sign_in_client(address: str | None) -> str:
    """The client a wrong password is counted against: an IPv4 address as it is, an IPv6
    address by its /64 (one subscriber's whole network, which costs a guesser nothing to move
    within), an IPv4-mapped IPv6 address as its IPv4 one."""
    try:
        ip = ipaddress.ip_address((address or "").strip())
    except ValueError:
        return UNKNOWN_CLIENT
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def authenticate(*, login: str, password: str, client: str = UNKNOWN_CLIENT) -> UserRecord:
    """The active user with this email or username and password; ``AuthenticationError`` if not.

    An unknown login costs a full hash verification too, so timing does not tell which part
    was wrong; the error is the same either way. Wrong passwords pause sign-in for the account
    and ``client`` (see :func:`sign_in_client`), and mildly for the account (:func:`_paused`).
    """
    with transaction() as connection:
        users = UserRepository(connection)
        user = users.get_by_email(login) if "@" in login else users.get_by_username(login)
        if user is not None:
            settings = get_settings()
            _paused(
                SignInFailureRepository(connection).begin_attempt(
                    user.id,
                    client,
                    window_s=settings.sign_in_failure_window_s,
                    hold_s=SIGN_IN_ATTEMPT_HOLD_S,
                )
            )
    hashed = user.hashed_password if user is not None else dummy_hash()
    right = verify_password(hashed, password)
    if user is not None:  # ends the attempt begun above
        (_forget_failed_sign_ins if right else _failed_sign_in)(user.id, client)
    if not right or user is None or not user.is_active:
        raise AuthenticationError("Invalid credentials")
    if needs_rehash(user.hashed_password):
        _rehash(user.id, password)
    return user


def _paused(pause: SignInPause) -> None:
    """``TooManyAttemptsError`` while sign-in is paused for the attempt's account and client.

    During a pause no password is checked (a right one would tell a guesser it is right) and
    nothing is counted, so a guesser cannot make a pause longer than one step; each step is
    capped and ends by itself. A guesser's pause is their client's: the owner signing in from
    another client is not slowed by it. The account-wide pause (for guessing from many clients)
    is capped at ``SIGN_IN_ACCOUNT_MAX_PAUSE_S`` and never applies to a client without wrong
    passwords of its own for the account.
    """
    if pause.seconds > 0:
        raise TooManyAttemptsError(math.ceil(pause.seconds))


def _count_failure(connection: Connection, user_id: int, client: str) -> None:
    settings = get_settings()
    SignInFailureRepository(connection).record_failure(
        user_id,
        client,
        own=SlowingRule(settings.sign_in_free_attempts, settings.sign_in_max_pause_s),
        account=SlowingRule(
            settings.sign_in_account_free_attempts, settings.sign_in_account_max_pause_s
        ),
        window_s=settings.sign_in_failure_window_s,
    )


@retry_on_conflict()
def _failed_sign_in(user_id: int, client: str) -> None:
    with transaction() as connection:
        _count_failure(connection, user_id, client)


@retry_on_conflict()
def _forget_failed_sign_ins(user_id: int, client: str) -> None:
    with transaction() as connection:
        SignInFailureRepository(connection).clear(user_id, client)


@retry_on_conflict()
def _rehash(user_id: int, password: str) -> None:
    hashed = hash_password(password)
    with transaction() as connection:
        UserRepository(connection).update(user_id, hashed_password=hashed)


def register(*, email: str, username: str, password: str, welcome_post: bool = False) -> UserRecord:
    """Register a user, with their welcome post when asked (atomically)."""
    if welcome_post:
        user, _post = create_user_with_welcome_post(
            email=email, username=username, password=password
        )
        return user
    return register_user(email=email, username=username, password=password)


def get_user(user_id: int, *, actor: Requester) -> tuple[UserRecord, Actor]:
    """The user with this id and the actor who asked (who decides what of it they see);
    ``NotFoundError`` if none."""
    with transaction() as connection:
        viewer = _resolve(connection, actor)
        user = UserRepository(connection).get(user_id)
    if user is None:
        raise NotFoundError(f"User {user_id} not found")
    return user, viewer


def list_active_users(request: PageRequest, *, actor: Requester) -> tuple[Page[Any], Actor]:
    """One page of active users (list items) and their total, and the actor who asked (who
    decides what of each item they see)."""
    with transaction() as connection:
        viewer = _resolve(connection, actor)
        users = UserRepository(connection)
        return users.list_page(UserRepository.active_users_list(), request), viewer


@retry_on_conflict()
def update_user(  # noqa: PLR0913, PLR0912 - the fields of the change, each with its rule
    user_id: int,
    *,
    actor: Requester,
    email: str | None = None,
    username: str | None = None,
    password: str | None = None,
    current_password: str | None = None,
    if_match: Precondition | None = None,
    client: str = UNKNOWN_CLIENT,
) -> UserRecord:
    """Change a user's email, username or password (the user or an admin); 409 on duplicates.

    A new email or password needs ``current_password``, the caller's own password (an admin
    gives theirs), so a stolen token alone cannot take the account over; a wrong one counts as
    a failed sign-in of the caller from ``client``. A new password voids every token issued before.
    ``if_match``: the version the caller read (see :func:`_check_version`).
    """
    changes: dict[str, Any] = {}
    if email is not None:
        changes["email"] = normalize_email(email)
    if username is not None:
        changes["username"] = normalize_username(username)
    if password is not None:
        changes["hashed_password"] = hash_password(password)
    credentials = email is not None or password is not None
    wrong_password = False
    user: UserRecord | None = None
    with transaction() as connection:
        who = _resolve(connection, actor)
        _require(who, user_id)
        users = UserRepository(connection)
        if if_match is not None or who.user_id != user_id:
            # Locked, so that the version checked is the version changed.
            current = users.lock(user_id)
            if current is None:
                raise NotFoundError(f"User {user_id} not found")
            _check_version(current, if_match, actor=who, owner_id=user_id)
        if credentials and who.user_id is not None:
            if current_password is None:
                raise ValidationError(
                    "current_password: your password is needed to change an email or password",
                    details=[
                        {"in": "body", "field": "current_password", "message": "Field required"}
                    ],
                )
            me = users.lock(who.user_id)
            assert me is not None  # read by _resolve in this transaction
            # Slowed as a sign-in of the caller from this client: a stolen token is no oracle.
            pause = SignInFailureRepository(connection).pause(me.id, client)
            _paused(pause)
            if not verify_password(me.hashed_password, current_password):
                _count_failure(connection, me.id, client)
                wrong_password = True
            elif pause.client_failed:
                SignInFailureRepository(connection).clear(me.id, client)
        if not wrong_password:
            if password is not None:
                user = users.revoke_tokens(user_id, **changes)
            else:
                user = users.update(user_id, **changes) if changes else users.get(user_id)
            if user is None:
                raise NotFoundError(f"User {user_id} not found")
    if wrong_password or user is None:
        raise CurrentPasswordError()  # after the failure was committed
    return user


@retry_on_conflict()
def deactivate_user(user_id: int, *, actor: Requester) -> UserRecord:
    """Deactivate a user (the user or an admin): they can no longer sign in, and their tokens
    are refused at once."""
    with transaction() as connection:
        _require(_resolve(connection, actor), user_id)
        user = UserRepository(connection).deactivate(user_id)
        if user is None:
            raise NotFoundError(f"User {user_id} not found")
        return user


@retry_on_conflict()
def sign_out_everywhere(user_id: int, *, actor: Requester) -> None:
    """Void every token of a user (the user or an admin); they sign in again to get a new one."""
    with transaction() as connection:
        _require(_resolve(connection, actor), user_id)
        if UserRepository(connection).revoke_tokens(user_id) is None:
            raise NotFoundError(f"User {user_id} not found")


@retry_on_conflict()
def set_admin(email: str, *, is_admin: bool) -> UserRecord:
    """Grant or revoke admin rights by email (an operator's action: no actor, no API route)."""
    with transaction() as connection:
        users = UserRepository(connection)
        user = users.get_by_email(normalize_email(email))
        updated = users.update(user.id, is_admin=is_admin) if user is not None else None
        if updated is None:
            raise NotFoundError("No user with that email")
        return updated


def list_user_posts(
    user_id: int, *, actor: Requester, include_drafts: bool, request: PageRequest
) -> Page[Any]:
    """A user's published posts (list items); with drafts only for that user or an admin."""
    with transaction() as connection:
        resolved, author = _resolve_with_user(connection, actor, user_id)
        if not resolved.may_act_for(user_id) and include_drafts:
            raise ForbiddenError("Only the author or an admin can see drafts")
        if author is None:
            raise NotFoundError(f"User {user_id} not found")
        query = PostRepository.author_list(user_id, include_drafts=include_drafts)
        return PostRepository(connection).list_page(query, request)


@retry_on_conflict()
def create_post(*, actor: Requester, title: str, content: str) -> PostRecord:
    """A new draft by the caller."""
    with transaction() as connection:
        author = _resolve(connection, actor)
        if author.user_id is None:
            raise ForbiddenError("Only a user can author posts")
        return PostRepository(connection).create(
            author_id=author.user_id, title=title, content=content
        )


def list_published_posts(request: PageRequest, *, query: str | None = None) -> Page[Any]:
    """Published posts (list items), newest first; only those matching ``query`` when given."""
    with transaction() as connection:
        posts = PostRepository(connection)
        page = posts.list_page(PostRepository.feed_list(query), request)
        # A search's statement finds nothing for a q without a trigram: only an empty page asks.
        if query is not None and not page.items and not posts.searchable(query):
            raise ValidationError(
                "q must hold at least three letters or digits in a row", details={"field": "q"}
            )
        return page


def _visible_post(
    posts: PostRepository, post_id: int, actor: Actor | None, *, lock: bool
) -> PostRecord:
    post = posts.lock(post_id) if lock else posts.get(post_id)
    # A draft is invisible to everyone but its author and admins: 404, not 403, so it can't leak.
    if post is None or not (post.published or (actor and actor.may_act_for(post.author_id))):
        raise NotFoundError(f"Post {post_id} not found")
    return post


def _owned_post(posts: PostRepository, post_id: int, actor: Actor) -> PostRecord:
    """The post, locked for a change that only its author or an admin may make."""
    post = _visible_post(posts, post_id, actor, lock=True)
    _require(actor, post.author_id)
    return post


def get_post(post_id: int, *, actor: Requester | None) -> PostRecord:
    """A published post for anyone; a draft only for its author or an admin."""
    with transaction() as connection:
        viewer = _resolve(connection, actor) if actor is not None else None
        return _visible_post(PostRepository(connection), post_id, viewer, lock=False)


@retry_on_conflict()
def update_post(
    post_id: int,
    *,
    actor: Requester,
    title: str | None = None,
    content: str | None = None,
    if_match: Precondition | None = None,
) -> PostRecord:
    """Edit a post's title or content (its author or an admin).

    ``if_match``: the version the caller read (see :func:`_check_version`).
    """
    changes = {k: v for k, v in {"title": title, "content": content}.items() if v is not None}
    with transaction() as connection:
        posts = PostRepository(connection)
        who = _resolve(connection, actor)
        post = _owned_post(posts, post_id, who)
        _check_version(post, if_match, actor=who, owner_id=post.author_id)
        updated = posts.update(post_id, **changes) if changes else post
        assert updated is not None  # locked above
        return updated


@retry_on_conflict()
def delete_post(post_id: int, *, actor: Requester, if_match: Precondition | None = None) -> None:
    """Delete a post (its author or an admin).

    ``if_match``: the version the caller read (see :func:`_check_version`).
    """
    with transaction() as connection:
        posts = PostRepository(connection)
        who = _resolve(connection, actor)
        post = _owned_post(posts, post_id, who)
        _check_version(post, if_match, actor=who, owner_id=post.author_id)
        posts.delete(post_id)


# --- safe retries ---------------------------------------------------------------------------


@retry_on_conflict()
def run_once(request: IdempotentRequest, work: Callable[[], StoredReply]) -> StoredReply:
    """``work`` at most once per key of the caller: its answer, or the one kept from before.

    The key is claimed, the work done (its own units of work join this one) and its answer
    kept, all in one transaction: a failure keeps nothing, so a retry does the work then.
    A concurrent duplicate waits for the first to end and gets its answer (``replayed``).
    The same key with another request is a ``IdempotencyKeyReusedError`` (422).
    """
    ttl = get_settings().idempotency_ttl_seconds
    with transaction() as connection:
        keys = IdempotencyKeyRepository(connection)
        if keys.claim(request.scope, request.key, request.fingerprint, ttl):
            reply = work()
            keys.complete(
                request.scope, request.key, status=reply.status, headers=reply.headers,
                body=reply.body,
            )  # fmt: skip
            return reply
        kept = keys.get(request.scope, request.key)
    if kept is None or kept.status_code is None:  # pragma: no cover - claim() just saw it
        raise AssertionError("an unclaimable key without a committed answer")
    if kept.fingerprint != request.fingerprint:
        raise IdempotencyKeyReusedError(details={"header": "Idempotency-Key"})
    return StoredReply(kept.status_code, dict(kept.headers or {}), kept.body or "", replayed=True)


def purge_idempotency_keys(*, batch: int = 5000, max_batches: int = 100) -> int:
    """Delete expired idempotency records, a batch per transaction; how many went."""
    return _purge(
        lambda connection: IdempotencyKeyRepository(connection).purge_expired(batch),
        batch,
        max_batches,
    )


def purge_sign_in_failures(*, batch: int = 5000, max_batches: int = 100) -> int:
    """Delete forgotten sign-in failure rows, a batch per transaction; how many went."""
    return _purge(
        lambda connection: SignInFailureRepository(connection).purge_expired(batch),
        batch,
        max_batches,
    )


def _purge(step: Callable[[Connection], int], batch: int, max_batches: int) -> int:
    deleted = 0
    for _ in range(max_batches):
        with transaction() as connection:
            count = step(connection)
        deleted += count
        if count < batch:
            break
    return deleted
