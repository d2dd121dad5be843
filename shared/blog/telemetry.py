"""Logging, metrics and tracing of every function; the end of its cold start.

Tracing is :mod:`blog.tracing`'s (X-Ray subsegments sent to the daemon Lambda runs, standard
library only): a sampled invocation records the handler, each database statement and, once the
process calls AWS, the AWS SDK's calls; one that is not sampled records and imports nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import TYPE_CHECKING, Any, TypeVar

from aws_lambda_powertools import Logger, Metrics

from blog import end_cold_start, tracing

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

logger = Logger()  # service name: POWERTOOLS_SERVICE_NAME
metrics = Metrics()  # namespace: POWERTOOLS_METRICS_NAMESPACE

H = TypeVar("H", bound=Callable[..., Any])


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
        name = handler.__name__  # the subsegment's name, as Powertools' Tracer gave it

        @wraps(handler)
        def entry(event: dict[str, Any], context: LambdaContext) -> Any:
            if not pause_through_first_call:
                end_cold_start()
            try:
                with tracing.invocation(name):  # records neither the event nor the response
                    return logged(event, context)
            finally:
                end_cold_start()

        return metrics.log_metrics(entry) if with_metrics else entry  # type: ignore[return-value]

    return decorate
