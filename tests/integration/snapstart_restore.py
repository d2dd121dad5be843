"""A SnapStart snapshot and two restores, simulated: ``python snapstart_restore.py < job``.

Run by ``test_snapstart.py`` in a fresh interpreter, as Lambda initializes a version: Secrets
Manager is moto's (holding the database's credentials and the token signing key, as the
template's secrets do), the function is imported and the layer's before-snapshot hooks run; then
the process forks once per restore. Each fork is a restored environment: it first puts ``random``
back in the snapshot's state (as a real restore finds it), runs the after-restore hooks and
invokes the handler once on a real request to the test database. Between the two restores the
signing key is rotated. Prints one JSON document: what the snapshot held, and per restore its
random draws, its connection, its cached secrets and the response.
"""

from __future__ import annotations

import json
import os
import random
import struct
import sys
from pathlib import Path
from typing import Any

DRAWS = 4


def _restore(handler: Any, event: dict[str, Any], state: Any) -> dict[str, Any]:
    """One restored environment: the after-restore hooks, then one invocation."""
    from sqlalchemy import event as sa_event

    from blog import db, snapstart
    from local.gateway import LambdaContext

    random.setstate(state)  # what every environment restored from the snapshot starts with
    os.environ["AWS_LAMBDA_INITIALIZATION_TYPE"] = "snap-start"
    snapstart.run_after_restore()
    draws = [random.random() for _ in range(DRAWS)]
    held_after_hooks = snapstart.held()
    flags_before = snapstart.cold_start_flags()

    connections: list[dict[str, Any]] = []

    def connected(dbapi_connection: Any, _record: Any) -> None:
        pid, _key = struct.unpack("!ii", dbapi_connection._backend_key_data)
        connections.append(
            {"backend_pid": pid, "local_port": dbapi_connection._usock.getsockname()[1]}
        )

    sa_event.listen(db.get_engine(), "connect", connected)
    response = handler(event, LambdaContext("GetPostFunction"))

    from blog import secrets_manager

    cached = [kept.value for kept in secrets_manager._kept.values()]
    return {
        "pid": os.getpid(),
        "draws": draws,
        "held_after_hooks": held_after_hooks,
        "held_after_request": snapstart.held(),
        "cold_start_before": flags_before,
        "cold_start_after": snapstart.cold_start_flags(),
        "connections": connections,
        "secret_ids": [id(value) for value in cached],
        "status": response["statusCode"],
        "body": json.loads(response["body"]),
    }


def _deferred() -> list[str]:
    """The layer's models and the function's routes whose validation is not built yet."""
    from pydantic import BaseModel

    from blog import schemas
    from local.functions import functions, load_module

    app = load_module(functions()["GetPostFunction"]).app
    models = [
        name
        for name, model in vars(schemas).items()
        if isinstance(model, type)
        and issubclass(model, BaseModel)
        and model.__module__ == schemas.__name__
        and not model.__pydantic_complete__
        # a generic model (Page) validates nothing itself: its parametrizations do
        and not model.__pydantic_generic_metadata__["parameters"]
    ]
    routes = [r.path for r in [*app._static_routes, *app._dynamic_routes] if r._dependant is None]
    return models + routes


def _fork(handler: Any, event: dict[str, Any], state: Any) -> dict[str, Any]:
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(reader)
        code = 0
        try:
            report = _restore(handler, event, state)
        except BaseException as error:  # reported to the parent, which fails the test
            report, code = {"error": repr(error)}, 1
        with os.fdopen(writer, "w") as out:
            json.dump(report, out)
        os._exit(code)
    os.close(writer)
    with os.fdopen(reader) as answer:
        text = answer.read()
    os.waitpid(pid, 0)
    result: dict[str, Any] = json.loads(text)
    return result


def main() -> int:
    """Run the job read from stdin; print the report."""
    job = json.loads(sys.stdin.read())
    repo = Path(job["repo"])
    sys.path[:0] = [str(repo / "shared"), str(repo)]

    from moto import mock_aws

    with mock_aws():
        import boto3

        client = boto3.client("secretsmanager")
        db_arn = client.create_secret(Name="blog/db", SecretString=json.dumps(job["db_secret"]))
        jwt_arn = client.create_secret(Name="blog/jwt", SecretString=job["signing_keys"][0])
        os.environ.update(DB_SECRET_ARN=db_arn["ARN"], JWT_SECRET_ARN=jwt_arn["ARN"])

        # Initialization, as Lambda does it when it publishes the version
        from local.functions import functions, load_handler

        handler = load_handler(functions()["GetPostFunction"])
        from blog import snapstart

        held_after_import = snapstart.held()
        deferred_after_import = _deferred()
        snapstart.run_before_snapshot()
        snapshot = {
            "held": snapstart.held(),
            "deferred_after_import": deferred_after_import,
            "deferred": _deferred(),
            "runtime_hooks": snapstart.RUNTIME_HOOKS,
            "cold_start": snapstart.cold_start_flags(),
        }
        state = random.getstate()
        expected = [random.random() for _ in range(DRAWS)]  # what the state draws unreseeded
        random.setstate(state)

        restores = []
        for number, token in enumerate(job["tokens"]):
            if number:  # the key rotates after the snapshot: the restore must fetch the new one
                client.put_secret_value(
                    SecretId=jwt_arn["ARN"], SecretString=job["signing_keys"][1]
                )
            event = json.loads(json.dumps(job["event"]))
            event["headers"]["authorization"] = f"Bearer {token}"
            restores.append(_fork(handler, event, state))

    report = {
        "held_after_import": held_after_import,
        "snapshot": snapshot,
        "unreseeded_draws": expected,
        "restores": restores,
    }
    json.dump(report, sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
