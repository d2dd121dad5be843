"""EventBridge schedule (hourly): delete the idempotency records whose retention has passed,
and the sign-in failure rows already forgotten.

Expired rows are already ignored on read (a retry after the window does the work again; old
failures no longer count); this keeps each table at about one window of rows.
"""

from typing import Any

from blog import services
from blog.telemetry import lambda_entry, logger, metrics

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext


@lambda_entry()
def lambda_handler(_event: dict[str, Any], _context: LambdaContext) -> dict[str, int]:
    deleted = services.purge_idempotency_keys()
    metrics.add_metric(name="IdempotencyKeysPurged", unit=MetricUnit.Count, value=deleted)
    failures = services.purge_sign_in_failures()
    metrics.add_metric(name="SignInFailuresPurged", unit=MetricUnit.Count, value=failures)
    logger.info(
        "purged expired rows", extra={"deleted": deleted, "sign_in_failures_deleted": failures}
    )
    return {"deleted": deleted, "sign_in_failures_deleted": failures}
