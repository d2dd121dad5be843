"""Logging, metrics and tracing of every function; the end of its cold start.

Powertools' ``Tracer`` imports the X-Ray SDK when it is built, so it is built on the first
invocation that is traced (tracing active and the request sampled), not at import: a function
whose cold start is not sampled never loads it. When it is built, the database's statements
(SQLAlchemy engine events, no X-Ray SQLAlchemy patch) and, once the process calls AWS, the AWS
SDK are traced as subsegments of the handler's.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable
from functools import lru_cache, wraps
from typing import TYPE_CHECKING, Any, Final, TypeVar

from aws_lambda_powertools import Logger, Metrics

from blog import end_cold_start

if TYPE_CHECKING:
    from aws_lambda_powertools import Tracer
    from aws_lambda_powertools.utilities.typing import LambdaContext

logger = Logger()  # service name: POWERTOOLS_SERVICE_NAME
metrics = Metrics()  # namespace: POWERTOOLS_METRICS_NAMESPACE

H = TypeVar("H", bound=Callable[..., Any])
#: At most this much of a statement's text goes into its subsegment (parameters never do).
SQL_TEXT_MAX: Final = 2_000

_state = {"invocations": 0, "aws_sdk": False}


def tracing_active() -> bool:
    """Whether this invocation is traced: on Lambda (not SAM local), tracing not disabled, and
    the request sampled (``Sampled=1`` in the trace header Lambda sets for each invocation)."""
    if not os.environ.get("LAMBDA_TASK_ROOT") or os.environ.get("AWS_SAM_LOCAL"):
        return False
    if os.environ.get("POWERTOOLS_TRACE_DISABLED", "false").lower() in {"1", "true", "on", "y"}:
        return False
    return "Sampled=1" in os.environ.get("_X_AMZN_TRACE_ID", "")


@lru_cache(maxsize=1)
def tracer() -> Tracer:
    """Powertools' Tracer (X-Ray), built on first use, with the database's statements traced.

    Only the AWS SDK is patched, and only once the process uses it (:func:`trace_aws_sdk`):
    patching everything (Powertools' default) makes X-Ray's SQLAlchemy hook compile each
    statement again, uncached, to record its text, which costs more than the rest of a warm
    request's Python work.
    """
    from aws_lambda_powertools import Tracer
    from aws_lambda_powertools.tracing import tracer as powertools_tracer

    built = Tracer(auto_patch=False)
    if _state["invocations"] > 1:  # built after the first invocation: it was not traced
        powertools_tracer.is_cold_start = False
    if "sqlalchemy" in sys.modules:  # a function with a database
        _trace_statements(built)
    if _state["aws_sdk"]:
        built.patch(("botocore",))
    return built


def trace_aws_sdk() -> None:
    """Have X-Ray trace the AWS SDK; call before its first use (a no-op where nothing traces).

    Patching botocore imports it, which costs a cold start tens of milliseconds: a process pays
    that only when it calls AWS (a secret to fetch) and is traced, not at start-up.
    """
    if not _state["aws_sdk"]:
        _state["aws_sdk"] = True
        if tracer.cache_info().currsize:
            tracer().patch(("botocore",))


def _trace_statements(built: Tracer) -> None:
    """A ``remote`` subsegment per statement sent to PostgreSQL, with its text (placeholders,
    never the parameters)."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    recorder: Any = built.provider

    def before(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if not tracing_active():
            return
        subsegment = recorder.begin_subsegment("PostgreSQL", namespace="remote")
        if subsegment is not None:
            subsegment.set_sql(
                {"database_type": "PostgreSQL", "driver_version": "pg8000",
                 "sanitized_query": statement[:SQL_TEXT_MAX]}
            )  # fmt: skip

    def after(*_args: Any) -> None:
        _end(None)

    def failed(context: Any) -> None:
        _end(context.original_exception)

    def _end(error: BaseException | None) -> None:
        current = recorder.current_subsegment() if tracing_active() else None
        if current is None or current.name != "PostgreSQL":
            return
        if error is not None:
            current.add_exception(error, traceback.extract_stack(), remote=True)
        recorder.end_subsegment()

    event.listen(Engine, "before_cursor_execute", before)
    event.listen(Engine, "after_cursor_execute", after)
    event.listen(Engine, "handle_error", failed)


def lambda_entry(
    *,
    correlation_id_path: str | None = None,
    with_metrics: bool = True,
    pause_through_first_call: bool = True,
) -> Callable[[H], H]:
    """A function's entry point: traced when sampled, the invocation's context in the logs,
    metrics flushed (unless ``with_metrics=False``); and the cold start ended
    (:func:`blog.end_cold_start`) after the first invocation, or before it with
    ``pause_through_first_call=False`` (a first call that may allocate much: an import batch)."""

    def decorate(handler: H) -> H:
        logged = logger.inject_lambda_context(handler, correlation_id_path=correlation_id_path)
        traced: list[Callable[..., Any]] = []

        @wraps(handler)
        def entry(event: dict[str, Any], context: LambdaContext) -> Any:
            _state["invocations"] += 1
            if not pause_through_first_call:
                end_cold_start()
            try:
                if tracing_active():
                    if not traced:  # responses may carry personal data: never recorded
                        capture = tracer().capture_lambda_handler
                        traced.append(capture(logged, capture_response=False))
                    return traced[0](event, context)
                return logged(event, context)
            finally:
                end_cold_start()

        return metrics.log_metrics(entry) if with_metrics else entry  # type: ignore[return-value]

    return decorate
