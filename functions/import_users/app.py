"""SQS consumer: bulk user import with partial batch failures.

Each message (``{"users": [...]}``) is validated and upserted on email in one transaction. A bad
message fails alone and goes back to the queue (then to the dead-letter queue); the others commit.
Logs name the message id and the kind of error, never the users' data.
"""

from typing import Any

from blog import services
from blog.errors import DomainError
from blog.schemas import parse_import_message
from blog.telemetry import lambda_entry, logger, metrics

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import ValidationError

# Report every failed message, even when all fail, rather than failing the whole invocation.
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


class ImportFailed(Exception):
    """A message that could not be imported; the text carries no personal data."""


def import_message(record: SQSRecord) -> int:
    """Validate and import one message; returns how many users it carried."""
    try:
        users = parse_import_message(record.body)
        count = len(services.import_user_batch(users))
    except ValidationError as error:
        problems = sorted(
            {".".join(map(str, e["loc"][:1] + e["loc"][2:])) or e["type"] for e in error.errors()}
        )
        reason = f"invalid message: {len(error.errors())} problem(s) in {', '.join(problems)[:300]}"
        _failed(record, "validation_error", reason)
        raise ImportFailed(reason) from None
    except DomainError as error:
        _failed(record, error.code, error.message)
        raise ImportFailed(error.code) from None
    metrics.add_metric(name="UsersImported", unit=MetricUnit.Count, value=count)
    return count


def _failed(record: SQSRecord, code: str, reason: str) -> None:
    metrics.add_metric(name="ImportMessagesFailed", unit=MetricUnit.Count, value=1)
    logger.warning(
        "import message failed",
        extra={"message_id": record.message_id, "error_code": code, "reason": reason},
    )


# A batch may carry 10,000 users: the collector resumes before it, not after.
@lambda_entry(pause_through_first_call=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return process_partial_response(
        event=event, record_handler=import_message, processor=processor, context=context
    )
