"""A lower bound for the layer's cold start: a handler that imports what any handler of this
stack must import (the project's required packages, the parts a route uses) and does nothing.

SQLAlchemy Core with the pg8000 dialect (the request path builds Core statements; the ORM is
not needed there), pg8000, pydantic, and Powertools' HTTP resolver and logger; not the tracing,
the metrics, the settings or any of the layer's code. They are imported with the garbage
collector paused, as the layer does, so this is the least they can cost. ``make bench`` starts
it cold beside the functions: how long this takes, against the FastAPI + Mangum app, is the
least cold-start ratio any handler built on these packages can reach. Never deployed.
"""

from __future__ import annotations

import gc

gc.disable()

from typing import Any  # noqa: E402

import pg8000.dbapi  # noqa: E402, F401
import sqlalchemy.dialects.postgresql.pg8000  # noqa: E402, F401  (postgresql+pg8000 engines)
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver  # noqa: E402
from aws_lambda_powertools.logging import Logger  # noqa: E402
from pydantic import BaseModel  # noqa: E402
from sqlalchemy import Connection, Table  # noqa: E402, F401

gc.freeze()
gc.enable()

app = APIGatewayHttpResolver()
logger = Logger()


class Empty(BaseModel):
    """A model, so that pydantic builds a validator as every route's models do."""

    ok: bool = True


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:  # noqa: ARG001
    """200 with an empty JSON object, whatever the event."""
    return {"statusCode": 200, "body": Empty().model_dump_json()}
