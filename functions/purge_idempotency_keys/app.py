"""EventBridge schedule (hourly): delete the idempotency records whose retention has passed.

Expired records are already ignored on read (a retry after the window does the work again);
this keeps the table at about one window of rows.
"""

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from blog import services
from blog.telemetry import lambda_entry, logger, metrics


@lambda_entry()
def lambda_handler(_event: dict[str, Any], _context: LambdaContext) -> dict[str, int]:
    deleted = services.purge_idempotency_keys()
    metrics.add_metric(name="IdempotencyKeysPurged", unit=MetricUnit.Count, value=deleted)
    logger.info("purged expired idempotency keys", extra={"deleted": deleted})
    return {"deleted": deleted}
