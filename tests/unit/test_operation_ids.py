"""Every operation has a stable, readable id (its function's folder name) and a tag."""

from __future__ import annotations

import json
import re

import pytest

from local import openapi
from local.functions import functions, load_module

HTTP_FUNCTIONS = sorted(
    (function.code_dir.name, function) for function in functions().values() if function.routes
)
SNAKE_CASE = re.compile(r"^[a-z]+(_[a-z]+)*$")


def _routes(function: object) -> list[object]:
    app = load_module(function).app  # type: ignore[arg-type]
    return [*app._static_routes, *app._dynamic_routes]


@pytest.mark.parametrize(("folder", "function"), HTTP_FUNCTIONS, ids=[f for f, _ in HTTP_FUNCTIONS])
def test_every_route_declares_its_folder_name_as_operation_id_and_a_tag(
    folder: str, function: object
) -> None:
    for route in _routes(function):
        # Powertools makes one up from the function name, path and method when none is given.
        assert route.operation_id != route._generate_operation_id(), (  # type: ignore[attr-defined]
            f"functions/{folder}: pass operation_id= to the route decorator"
        )
        assert route.operation_id == folder  # type: ignore[attr-defined]
        assert route.tags, f"functions/{folder}: the route has no tag"  # type: ignore[attr-defined]


def test_a_route_without_operation_id_is_detected() -> None:
    # Given a route declared without an operation id
    from blog.http import make_app

    app = make_app()

    @app.get("/things/<thing_id>", tags=["things"])
    def get_thing(thing_id: int) -> dict[str, int]:
        return {"id": thing_id}

    (route,) = app._dynamic_routes
    # Then the generated id is the path-derived one the check above refuses
    assert route.operation_id == route._generate_operation_id() == "get_thing_things__thing_id__get"


def test_operation_ids_in_the_committed_document_are_unique_snake_case_and_tagged() -> None:
    document = json.loads(openapi.OPENAPI_FILE.read_text())
    ids = [
        operation["operationId"]
        for operations in document["paths"].values()
        for operation in operations.values()
    ]
    assert len(ids) == len(set(ids)) == len(HTTP_FUNCTIONS)
    assert all(SNAKE_CASE.match(operation_id) for operation_id in ids), ids
    declared = {tag["name"] for tag in document["tags"]}
    for operations in document["paths"].values():
        for operation in operations.values():
            assert operation["tags"], operation["operationId"]
            assert set(operation["tags"]) <= declared, operation["operationId"]
