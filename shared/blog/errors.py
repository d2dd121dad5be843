"""The domain's error hierarchy; each class carries its HTTP status and a stable code."""

from __future__ import annotations

from typing import Any, ClassVar


class DomainError(Exception):
    """Base of every error the API reports to a client."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"
    default_message: ClassVar[str] = "Internal error"

    def __init__(self, message: str | None = None, *, details: Any = None) -> None:
        super().__init__(message or self.default_message)
        self.message = message or self.default_message
        self.details = details


class ValidationError(DomainError):
    """The request is well-formed but its content is not acceptable."""

    status = 422
    code = "validation_error"
    default_message = "Validation failed"


class IdempotencyKeyReusedError(ValidationError):
    """The ``Idempotency-Key`` was used before for a different request."""

    code = "idempotency_key_reused"
    default_message = (
        "This Idempotency-Key was used for a different request; use a new key for a new request"
    )


class InvalidCursorError(ValidationError):
    """A list's ``cursor`` is not one this API issued for that list (or it is stale)."""

    status = 400
    code = "invalid_cursor"
    default_message = "Invalid cursor"

    def __init__(self, message: str | None = None, *, reason: str) -> None:
        super().__init__(message, details={"in": "query", "field": "cursor", "reason": reason})


class AuthenticationError(DomainError):
    """The caller could not be identified."""

    status = 401
    code = "unauthorized"
    default_message = "Invalid credentials"


class ForbiddenError(DomainError):
    """The caller is known but may not do this."""

    status = 403
    code = "forbidden"
    default_message = "Not allowed"


class PreconditionFailedError(DomainError):
    """``If-Match`` names no current version of the resource: someone else changed it first."""

    status = 412
    code = "precondition_failed"
    default_message = "The resource changed since you read it; read it again and retry"


class PreconditionRequiredError(DomainError):
    """The route needs ``If-Match`` from this caller, and the request has none."""

    status = 428
    code = "precondition_required"
    default_message = "Send If-Match with the ETag of the version you read"


class CurrentPasswordError(ForbiddenError):
    """A change of credentials whose ``current_password`` is not the caller's password."""

    code = "current_password_invalid"
    default_message = "current_password is not your password"


class TooManyAttemptsError(DomainError):
    """Sign-in is paused for this account after repeated wrong passwords; retry later."""

    status = 429
    code = "too_many_attempts"
    default_message = "Too many failed sign-ins for this account; retry later"

    def __init__(self, retry_after: int, message: str | None = None) -> None:
        super().__init__(message)
        self.retry_after = max(1, retry_after)


class DatabaseError(DomainError):
    """Base of errors that come from the data layer."""

    status = 500
    code = "database_error"
    default_message = "Database operation failed"


class NotFoundError(DatabaseError):
    """The addressed row does not exist."""

    status = 404
    code = "not_found"
    default_message = "Not found"


class DuplicateError(DatabaseError):
    """A unique constraint rejected the write."""

    status = 409
    code = "duplicate"
    default_message = "Already exists"


class ConflictError(DatabaseError):
    """The write conflicts with the current state (a foreign key or check constraint)."""

    status = 409
    code = "conflict"
    default_message = "Conflicts with the current state"


class InactiveUserError(ConflictError):
    """The operation needs an active user and this one is deactivated."""

    code = "user_inactive"
    default_message = "The user is deactivated"


class TransactionError(DatabaseError):
    """A transaction kept failing on deadlocks or serialization conflicts."""

    status = 503
    code = "transaction_conflict"
    default_message = "The operation conflicted with concurrent work; retry later"
    retry_after: int = 1


class UnavailableError(DatabaseError):
    """The database cannot be reached or timed out."""

    status = 503
    code = "service_unavailable"
    default_message = "The database is unavailable; retry later"
    retry_after: int = 5


#: One table from error class to HTTP status, for documentation and the API's error handler.
HTTP_STATUS: dict[type[DomainError], int] = {
    cls: cls.status
    for cls in (
        DomainError,
        ValidationError,
        InvalidCursorError,
        AuthenticationError,
        ForbiddenError,
        PreconditionFailedError,
        PreconditionRequiredError,
        CurrentPasswordError,
        TooManyAttemptsError,
        DatabaseError,
        NotFoundError,
        DuplicateError,
        ConflictError,
        InactiveUserError,
        TransactionError,
        UnavailableError,
    )
}


def http_status_for(error: BaseException) -> int:
    """The HTTP status for ``error``: its own class's entry, else the nearest base's, else 500."""
    for cls in type(error).__mro__:
        if cls in HTTP_STATUS:
            return HTTP_STATUS[cls]
    return 500
