"""template.yaml agrees with the code: one function per folder, its route, its authorizer, its
secrets; the sample events in events/ are requests to routes that exist."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver

REPO = Path(__file__).resolve().parents[2]
FUNCTIONS = REPO / "functions"
EVENTS = REPO / "events"

AUTHORIZER_FOLDER = "authorizer"
AUTHORIZER = "BearerAuthorizer"
PUBLIC_ROUTES = {"POST /users", "POST /auth/token", "GET /posts", "GET /posts/{post_id}"}
# The functions that sign or verify tokens themselves; no other function may read the key.
JWT_READERS = {"IssueTokenFunction", "AuthorizerFunction", "GetPostFunction"}
#: The functions that never connect to the database, so may not read its secret: the authorizer
#: checks the token alone.
NO_DATABASE: set[str] = {"AuthorizerFunction"}


def read_policies_for(name: str) -> set[str]:
    """The secret read policies a function must list, and no other: what it reads."""
    return ({"DbSecretReadPolicy"} if name not in NO_DATABASE else set()) | (
        {"JwtKeyReadPolicy"} if name in JWT_READERS else set()
    )


POWERTOOLS_PARAM = re.compile(r"<(\w+)>")  # Powertools' /users/<user_id> is /users/{user_id}
OPENAPI_PARAM = r"{\1}"
HTTP_METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"}


class CfnLoader(yaml.SafeLoader):
    """A safe YAML loader that reads CloudFormation's short tags as their long form."""


def _construct_tag(loader: CfnLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if suffix == "GetAtt":  # !GetAtt Resource.Attribute
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return {"Ref" if suffix == "Ref" else f"Fn::{suffix}": value}


CfnLoader.add_multi_constructor("!", _construct_tag)


@cache
def template() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.load((REPO / "template.yaml").read_text(), Loader=CfnLoader)  # noqa: S506
    return loaded


def resources(kind: str) -> dict[str, dict[str, Any]]:
    return {
        name: resource
        for name, resource in template()["Resources"].items()
        if resource["Type"] == kind
    }


def functions() -> dict[str, dict[str, Any]]:
    """Properties of every AWS::Serverless::Function by logical id."""
    return {
        name: resource.get("Properties", {})
        for name, resource in resources("AWS::Serverless::Function").items()
    }


def http_events(props: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        event.get("Properties", {})
        for event in (props.get("Events") or {}).values()
        if event.get("Type") == "HttpApi"
    ]


def template_routes() -> dict[str, tuple[str, dict[str, Any]]]:
    """``METHOD /path`` -> (function logical id, HttpApi event properties)."""
    routes: dict[str, tuple[str, dict[str, Any]]] = {}
    for name, props in functions().items():
        for event in http_events(props):
            key = f"{str(event['Method']).upper()} {event['Path']}"
            assert key not in routes, f"{key} is routed to {routes[key][0]} and {name}"
            routes[key] = (name, event)
    return routes


def folders() -> list[str]:
    return sorted(p.parent.name for p in FUNCTIONS.glob("*/app.py"))


def logical_id(folder: str) -> str:
    return "".join(part.capitalize() for part in folder.split("_")) + "Function"


def in_template(folder: str) -> bool:
    return any(
        str(props.get("CodeUri", "")).rstrip("/") == f"functions/{folder}"
        for props in functions().values()
    )


def function_for(folder: str) -> tuple[str, dict[str, Any]]:
    """The one template function whose code is functions/<folder>/."""
    found = [
        (name, props)
        for name, props in functions().items()
        if str(props.get("CodeUri", "")).rstrip("/") == f"functions/{folder}"
    ]
    assert len(found) == 1, f"functions/{folder}/ is the code of {len(found)} functions"
    return found[0]


@cache
def load_app(folder: str) -> ModuleType:
    """functions/<folder>/app.py, imported from its file as Lambda would (layer on the path)."""
    shared = str(REPO / "shared")
    if shared not in sys.path:
        sys.path.insert(0, shared)
    name = f"_template_test_{folder}_app"
    spec = importlib.util.spec_from_file_location(name, FUNCTIONS / folder / "app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def serves_http(folder: str) -> bool:
    """Whether functions/<folder>/app.py is an HTTP API handler (it has a resolver ``app``)."""
    return isinstance(getattr(load_app(folder), "app", None), APIGatewayHttpResolver)


def declared_routes(folder: str) -> set[str]:
    """``METHOD /path/{param}`` of every route the function's resolver declares."""
    schema = load_app(folder).app.get_openapi_schema()
    return {
        f"{method.upper()} {POWERTOOLS_PARAM.sub(OPENAPI_PARAM, path)}"
        for path, item in schema.paths.items()
        for method in item.model_dump(exclude_none=True)
        if method.upper() in HTTP_METHODS
    }


def secret_refs(props: dict[str, Any]) -> set[str]:
    """The secret read policies (managed policies of the template) a function lists."""
    return {
        policy["Ref"]
        for policy in props.get("Policies") or []
        if isinstance(policy, dict) and str(policy.get("Ref", "")).endswith("ReadPolicy")
    }


def route_events() -> list[Path]:
    """The HTTP API events (payload 2.0 with a route); not the SQS or CloudFormation ones."""
    return sorted(
        p
        for p in EVENTS.glob("*.json")
        if p.stem != AUTHORIZER_FOLDER and "routeKey" in json.loads(p.read_text())
    )


# ------------------------------------------------------------------------------- functions


def test_template_is_a_sam_template() -> None:
    assert template()["Transform"] == "AWS::Serverless-2016-10-31"
    assert set(template()["Outputs"]) >= {"ApiUrl", "SharedLayerArn"}


@pytest.mark.parametrize("folder", folders())
def test_each_folder_is_one_function_named_after_it(folder: str) -> None:
    name, props = function_for(folder)
    assert name == logical_id(folder)
    assert props["Handler"] == "app.lambda_handler"
    assert callable(load_app(folder).lambda_handler)


def test_every_function_has_its_folder() -> None:
    for name, props in functions().items():
        code = str(props.get("CodeUri", "")).rstrip("/")
        assert (REPO / code / "app.py").is_file(), f"{name}: no {code}/app.py"


@pytest.mark.parametrize("folder", folders())
def test_function_route_is_the_one_its_app_declares(folder: str) -> None:
    if not serves_http(folder):
        # The authorizer, queue consumers...: no route of their own.
        if in_template(folder):
            assert not http_events(function_for(folder)[1])
        return
    declared = declared_routes(folder)
    assert len(declared) == 1, f"functions/{folder}/app.py declares {sorted(declared)}"
    name, props = function_for(folder)
    events = http_events(props)
    assert len(events) == 1, f"{name} has {len(events)} HttpApi events"
    event = events[0]
    assert {f"{str(event['Method']).upper()} {event['Path']}"} == declared
    assert event["ApiId"] == {"Ref": "HttpApi"}
    assert event.get("PayloadFormatVersion", "2.0") == "2.0"


def test_authorizer_has_no_route() -> None:
    _, props = function_for(AUTHORIZER_FOLDER)
    assert not props.get("Events")


# ------------------------------------------------------------------------------- auth


def test_public_routes_are_exactly_the_four() -> None:
    public = {
        key
        for key, (_, event) in template_routes().items()
        if event["Auth"]["Authorizer"] == "NONE"
    }
    assert public == PUBLIC_ROUTES


def test_every_other_route_uses_the_bearer_authorizer() -> None:
    for key, (name, event) in template_routes().items():
        if key not in PUBLIC_ROUTES:
            assert event.get("Auth", {}).get("Authorizer") == AUTHORIZER, f"{name}: {key}"


def test_bearer_authorizer_is_the_authorizer_function() -> None:
    auth = resources("AWS::Serverless::HttpApi")["HttpApi"]["Properties"]["Auth"]
    authorizer = auth["Authorizers"][AUTHORIZER]
    # Its alias: a gradual deployment shifts the authorizer with the functions behind it.
    assert authorizer["FunctionArn"] == {"Ref": "AuthorizerFunction.Alias"}
    assert str(authorizer["AuthorizerPayloadFormatVersion"]) == "2.0"
    assert authorizer["EnableSimpleResponses"] is True
    assert authorizer["EnableFunctionDefaultPermissions"] is True
    assert authorizer["Identity"]["Headers"] == ["Authorization"]
    assert authorizer["Identity"]["ReauthorizeEvery"] == {"Ref": "AuthorizerCacheTtl"}
    # Secure by default: a route that names no authorizer is still protected.
    assert auth.get("DefaultAuthorizer") == AUTHORIZER


def test_secrets_are_least_privilege() -> None:
    for name, props in functions().items():
        assert secret_refs(props) == read_policies_for(name), name


# ------------------------------------------------------------------------------- runtime


def test_functions_run_python313_on_arm64_with_the_shared_layer() -> None:
    globals_ = template()["Globals"]["Function"]
    assert globals_["Runtime"] == "python3.13"
    assert globals_["Architectures"] == ["arm64"]
    assert globals_["Layers"] == [
        {"Ref": "SharedLayer"},
        {"Fn::If": ["UseSecretsExtension", {"Ref": "SecretsExtensionLayerArn"},
                    {"Ref": "AWS::NoValue"}]},
    ]  # fmt: skip
    assert globals_["Tracing"] == "Active"
    assert set(globals_["VpcConfig"]) == {"SubnetIds", "SecurityGroupIds"}
    overridden = {"Runtime", "Architectures", "Layers", "VpcConfig"}
    for name, props in functions().items():
        assert not overridden & set(props), f"{name} overrides {overridden & set(props)}"


def test_environment_configures_the_layer() -> None:
    # What each variable names in each deployment mode: tests/unit/test_deploy_modes.py.
    variables = template()["Globals"]["Function"]["Environment"]["Variables"]
    assert {
        "DB_SECRET_ARN",
        "DB_HOST",
        "DB_PORT",
        "DB_NAME",
        "DB_SSLMODE",
        "DB_SSL_CA_FILE",
        "JWT_SECRET_ARN",
        "POWERTOOLS_SERVICE_NAME",
        "POWERTOOLS_METRICS_NAMESPACE",
    } <= set(variables)
    assert variables["DB_SSLMODE"] == {"Ref": "DbSslMode"}
    assert not {"DATABASE_URL", "JWT_SIGNING_KEY"} & set(variables)  # local-only settings


#: How much sooner than Lambda's timeout a stuck request must end on its own (connecting, then its
#: one slow statement), so that it is answered (503 + Retry-After), not killed mid-request.
TIMEOUT_MARGIN_S = 2.0


def effective_timeouts(function: str) -> tuple[float, float, float]:
    """``(statement timeout, connect timeout, function timeout)`` in seconds, as deployed: the
    function's own settings, else the Globals', else the layer's defaults."""
    from blog.config import Settings

    globals_ = template()["Globals"]["Function"]
    props = functions()[function]
    variables = {
        **globals_.get("Environment", {}).get("Variables", {}),
        **props.get("Environment", {}).get("Variables", {}),
    }
    defaults = Settings.model_fields
    statement_ms = float(
        variables.get("DB_STATEMENT_TIMEOUT_MS", defaults["db_statement_timeout_ms"].default)
    )
    connect_s = float(variables.get("DB_CONNECT_TIMEOUT", defaults["db_connect_timeout"].default))
    return statement_ms / 1000, connect_s, float(props.get("Timeout", globals_["Timeout"]))


def test_every_function_times_out_its_statements_well_before_lambda_stops_it() -> None:
    for name in functions():
        statement_s, connect_s, function_s = effective_timeouts(name)
        assert statement_s + connect_s + TIMEOUT_MARGIN_S <= function_s, name


def test_shared_layer_is_built_for_python313_arm64() -> None:
    layer = resources("AWS::Serverless::LayerVersion")["SharedLayer"]
    props = layer["Properties"]
    assert props["ContentUri"].rstrip("/") == "shared"
    assert props["CompatibleRuntimes"] == ["python3.13"]
    assert props["CompatibleArchitectures"] == ["arm64"]
    assert layer["Metadata"]["BuildArchitecture"] == "arm64"
    assert (REPO / "shared" / "requirements.txt").is_file()


def test_the_layer_and_every_function_are_built_by_the_lambda_build_makefile() -> None:
    # sam build runs `make build-<LogicalId>` with lambda_build/Makefile for each of them.
    makefile = (REPO / "lambda_build" / "Makefile").read_text()
    targets = set(re.findall(r"^(build-[\w%]+):", makefile, re.MULTILINE))
    built = {
        name: resource
        for name, resource in template()["Resources"].items()
        if resource["Type"] in {"AWS::Serverless::Function", "AWS::Serverless::LayerVersion"}
    }
    assert "SharedLayer" in built
    for name, resource in built.items():
        metadata = resource.get("Metadata", {})
        assert metadata.get("BuildMethod") == "makefile", name
        assert metadata.get("ContextPath") == "lambda_build", name
        assert f"build-{name}" in targets or (
            name.endswith("Function") and "build-%Function" in targets
        ), f"lambda_build/Makefile has no build-{name} target"


def test_every_function_logs_to_a_group_with_retention() -> None:
    groups = {
        str(props["LogGroupName"].get("Fn::Sub")): props
        for props in (r["Properties"] for r in resources("AWS::Logs::LogGroup").values())
        if isinstance(props.get("LogGroupName"), dict)
    }
    for name in functions():
        props = groups.get(f"/aws/lambda/${{{name}}}")
        assert props is not None, f"{name} has no /aws/lambda/${{{name}}} log group"
        assert props["RetentionInDays"] == {"Ref": "LogRetentionDays"}


# ------------------------------------------------------------------------------- events


@pytest.mark.parametrize("path", route_events(), ids=lambda p: p.name)
def test_event_is_a_request_to_its_functions_route(path: Path) -> None:
    event = json.loads(path.read_text())
    routes = template_routes()
    assert event["version"] == "2.0"
    assert event["routeKey"] in routes, f"{path.name}: no route {event['routeKey']}"
    name, _ = routes[event["routeKey"]]
    assert name == logical_id(path.stem), f"{path.name} is a request for {name}"
    _assert_matches_route(event)
    assert event["requestContext"]["routeKey"] == event["routeKey"]
    assert event["requestContext"]["http"]["path"] == event["rawPath"]
    lambda_context = event["requestContext"].get("authorizer", {}).get("lambda")
    if event["routeKey"] in PUBLIC_ROUTES:
        assert lambda_context is None, "a public route has no authorizer context"
    else:
        # What the authorizer passes on: the token's claims, nothing read from the database.
        assert set(lambda_context) == {"user_id", "token_version", "expires_at"}
        assert all(isinstance(value, int) for value in lambda_context.values())
    if event.get("body") is not None:
        assert event["headers"]["content-type"] == "application/json"
        assert event["isBase64Encoded"] is False
        json.loads(event["body"])


def test_every_route_has_an_event() -> None:
    covered = {json.loads(p.read_text())["routeKey"] for p in route_events()}
    assert covered == set(template_routes())


def test_authorizer_event_is_a_request_authorizer_call_for_a_protected_route() -> None:
    event = json.loads((EVENTS / f"{AUTHORIZER_FOLDER}.json").read_text())
    assert (event["version"], event["type"]) == ("2.0", "REQUEST")
    assert event["routeKey"] in set(template_routes()) - PUBLIC_ROUTES
    assert event["identitySource"] == [event["headers"]["authorization"]]
    method = event["routeKey"].split(" ", 1)[0]
    assert event["routeArn"].endswith(f"/$default/{method}{event['rawPath']}")
    _assert_matches_route(event)


def _assert_matches_route(event: dict[str, Any]) -> None:
    """rawPath fits the route template and pathParameters are its placeholders' values."""
    route = event["routeKey"].split(" ", 1)[1]
    pattern = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(route))
    found = re.fullmatch(pattern, event["rawPath"])
    assert found, f"{event['rawPath']} does not match {route}"
    assert (event.get("pathParameters") or {}) == found.groupdict()


# ----------------------------------------------------------------- import and migrations


def test_import_queue_has_a_dead_letter_queue_and_a_long_enough_visibility_timeout() -> None:
    queue = template()["Resources"]["ImportUsersQueue"]["Properties"]
    function = functions()["ImportUsersFunction"]
    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == {
        "Fn::GetAtt": ["ImportUsersDeadLetterQueue", "Arn"]
    }
    assert queue["RedrivePolicy"]["maxReceiveCount"] == {"Ref": "ImportMaxReceiveCount"}
    assert int(queue["VisibilityTimeout"]) >= 6 * int(function["Timeout"])


def test_expired_idempotency_keys_are_purged_every_hour() -> None:
    (event,) = functions()["PurgeIdempotencyKeysFunction"]["Events"].values()
    assert event["Type"] == "ScheduleV2"
    assert event["Properties"]["ScheduleExpression"] == "rate(1 hour)"


def test_cors_lets_browsers_send_the_conditional_and_idempotency_headers() -> None:
    cors = resources("AWS::Serverless::HttpApi")["HttpApi"]["Properties"]["CorsConfiguration"]
    allowed = cors["Fn::If"][1]
    assert {"if-match", "if-none-match", "idempotency-key"} <= set(allowed["AllowHeaders"])
    assert {"etag", "location", "retry-after", "idempotent-replayed"} <= set(
        allowed["ExposeHeaders"]
    )


def test_import_function_reports_batch_item_failures_with_parameterised_batching() -> None:
    (event,) = functions()["ImportUsersFunction"]["Events"].values()
    assert event["Type"] == "SQS"
    props = event["Properties"]
    assert props["Queue"] == {"Fn::GetAtt": ["ImportUsersQueue", "Arn"]}
    assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert props["BatchSize"] == {"Ref": "ImportBatchSize"}
    assert props["MaximumBatchingWindowInSeconds"] == {"Ref": "ImportBatchWindowSeconds"}


def test_the_sample_custom_resource_events_carry_the_current_scripts_digest() -> None:
    # Else a local invoke of the update event would be taken for a rollback and do nothing.
    from local.migrations_digest import EVENTS as DIGEST_EVENTS
    from local.migrations_digest import digest

    for name in DIGEST_EVENTS:
        event = json.loads((EVENTS / name).read_text())
        assert event["ResourceProperties"]["ScriptsDigest"] == digest(), (
            f"events/{name} has a stale ScriptsDigest: run `make generate`"
        )


def test_migrations_run_as_a_custom_resource_with_the_current_scripts_digest() -> None:
    from local.migrations_digest import digest

    resource = template()["Resources"]["DatabaseMigrations"]
    assert resource["Type"] == "Custom::DatabaseMigrations"
    assert resource["Properties"]["ServiceToken"] == {"Fn::GetAtt": ["MigrationsFunction", "Arn"]}
    assert resource["Properties"]["ScriptsDigest"] == digest(), (
        "template.yaml has a stale ScriptsDigest: run `make generate`"
    )
    migrations = functions()["MigrationsFunction"]
    assert migrations["CodeUri"].rstrip("/") == "migrations"
    assert "build-MigrationsFunction:" in (REPO / "lambda_build" / "Makefile").read_text()
    assert int(migrations["Timeout"]) > 10 + 60  # room for the guard and real migrations


def test_the_migration_resource_cannot_keep_a_stack_waiting_an_hour() -> None:
    resource = template()["Resources"]["DatabaseMigrations"]["Properties"]
    migrations = functions()["MigrationsFunction"]
    # CloudFormation gives up shortly after the function's own timeout, not after an hour...
    assert int(migrations["Timeout"]) < int(resource["ServiceTimeout"]) <= 1200
    # ...and Lambda does not run a second upgrade after a failed first one already answered.
    assert migrations["EventInvokeConfig"]["MaximumRetryAttempts"] == 0


def test_every_other_function_waits_for_the_migrations() -> None:
    for name, resource in template()["Resources"].items():
        if resource["Type"] == "AWS::Serverless::Function" and name != "MigrationsFunction":
            assert resource.get("DependsOn") == "DatabaseMigrations", name


def test_every_other_event_belongs_to_the_import_purge_or_migration_function() -> None:
    others = {p.stem for p in EVENTS.glob("*.json")} - {p.stem for p in route_events()}
    others.discard(AUTHORIZER_FOLDER)
    assert others == {
        "import_users",
        "purge_idempotency_keys",
        "migrations_create",
        "migrations_update",
        "migrations_delete",
        "migrations_current",
        "migrations_history",
        "migrations_grant_admin",
    }
    scheduled = json.loads((EVENTS / "purge_idempotency_keys.json").read_text())
    assert (scheduled["source"], scheduled["detail-type"]) == ("aws.events", "Scheduled Event")
    sqs = json.loads((EVENTS / "import_users.json").read_text())
    assert {r["eventSource"] for r in sqs["Records"]} == {"aws:sqs"}
    for kind in ("create", "update", "delete"):
        event = json.loads((EVENTS / f"migrations_{kind}.json").read_text())
        assert event["RequestType"] == kind.capitalize()
        assert event["ResourceType"] == "Custom::DatabaseMigrations"
