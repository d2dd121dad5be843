"""What SAM's transform makes of the template: aliases, gradual deployments, roles."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.transformed import transformed
from tests.unit.test_deploy_modes import BRING_YOUR_OWN
from tests.unit.test_template import functions, read_policies_for

STAGES = {"dev": {}, "prod": {"Stage": "prod"}}


@pytest.fixture(scope="module", params=list(STAGES))
def stage(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    return request.param, transformed(STAGES[request.param])["Resources"]


def of_type(resources: dict[str, Any], kind: str) -> dict[str, Any]:
    return {n: r for n, r in resources.items() if r["Type"] == kind}


def test_every_route_and_the_authorizer_invoke_the_live_alias(stage: tuple[str, Any]) -> None:
    _, resources = stage
    body = resources["HttpApi"]["Properties"]["Body"]
    integrations = [
        op["x-amazon-apigateway-integration"]
        for item in body["paths"].values()
        for op in item.values()
        if isinstance(op, dict) and "x-amazon-apigateway-integration" in op
    ]
    routes = [
        event
        for props in functions().values()
        for event in (props.get("Events") or {}).values()
        if event["Type"] == "HttpApi"
    ]
    assert len(integrations) == len(routes) > 0
    for integration in integrations:
        uri = json.dumps(integration["uri"])
        assert "Aliaslive" in uri, uri
    authorizer = body["components"]["securitySchemes"]["BearerAuthorizer"]
    assert "AuthorizerFunctionAliaslive" in json.dumps(authorizer)
    (mapping,) = of_type(resources, "AWS::Lambda::EventSourceMapping").values()
    assert mapping["Properties"]["FunctionName"] == {"Ref": "ImportUsersFunctionAliaslive"}


def test_each_function_but_the_migrations_has_a_deployment_group_of_its_stage(
    stage: tuple[str, Any],
) -> None:
    name, resources = stage
    functions = set(of_type(resources, "AWS::Lambda::Function"))
    groups = of_type(resources, "AWS::CodeDeploy::DeploymentGroup")
    assert {g.removesuffix("DeploymentGroup") for g in groups} == functions - {"MigrationsFunction"}
    expected = "Canary10Percent5Minutes" if name == "prod" else "AllAtOnce"
    for group in groups.values():
        props = group["Properties"]
        assert props["DeploymentConfigName"]["Fn::Sub"][1] == {"ConfigName": expected}
        assert props["AutoRollbackConfiguration"]["Enabled"] is True
        assert "DEPLOYMENT_STOP_ON_ALARM" in props["AutoRollbackConfiguration"]["Events"]
        alarms = {a["Name"]["Ref"] for a in props["AlarmConfiguration"]["Alarms"]}
        assert alarms == {"FunctionErrorsAlarm", "AuthorizerErrorsAlarm", "ImportErrorsAlarm"}
    for function in functions - {"MigrationsFunction"}:
        alias = resources[f"{function}Aliaslive"]
        assert alias["UpdatePolicy"]["CodeDeployLambdaAliasUpdate"]["DeploymentGroupName"] == {
            "Ref": f"{function}DeploymentGroup"
        }


def test_cloudformation_invokes_the_migrations_unqualified_and_lambda_never_retries(
    stage: tuple[str, Any],
) -> None:
    _, resources = stage
    assert "MigrationsFunctionAliaslive" not in resources
    config = resources["MigrationsFunctionEventInvokeConfig"]["Properties"]
    assert (config["Qualifier"], config["MaximumRetryAttempts"]) == ("$LATEST", 0)
    token = resources["DatabaseMigrations"]["Properties"]["ServiceToken"]
    assert token == {"Fn::GetAtt": ["MigrationsFunction", "Arn"]}


def test_with_snapstart_each_request_path_function_snapshots_the_version_its_alias_invokes() -> (
    None
):
    # Given the prod transform with SnapStart on (canary deployments shift the alias)
    resources = transformed({"Stage": "prod", "SnapStart": "enabled"})["Resources"]
    switch = {
        "Fn::If": ["SnapStartEnabled", {"ApplyOn": "PublishedVersions"}, {"Ref": "AWS::NoValue"}]
    }
    routed = {
        name
        for name, props in functions().items()
        if any(e["Type"] == "HttpApi" for e in (props.get("Events") or {}).values())
    }

    # Then exactly the routes' functions and the authorizer carry the switch
    lambdas = of_type(resources, "AWS::Lambda::Function")
    snapped = {name for name, f in lambdas.items() if f["Properties"].get("SnapStart") == switch}
    assert snapped == routed | {"AuthorizerFunction"}
    assert not [
        n for n, f in lambdas.items() if n not in snapped and "SnapStart" in f["Properties"]
    ]
    # and each has a published version behind its alias, which is what gets the snapshot
    for name in snapped:
        alias = resources[f"{name}Aliaslive"]["Properties"]
        version = resources[alias["FunctionVersion"]["Fn::GetAtt"][0]]
        assert version["Type"] == "AWS::Lambda::Version", name
        assert version["Properties"]["FunctionName"] == {"Ref": name}, name


def test_function_roles_hold_only_the_runtime_policies_and_their_read_policies() -> None:
    resources = transformed(BRING_YOUR_OWN)["Resources"]
    runtime = {
        "AWSLambdaBasicExecutionRole",
        "AWSLambdaVPCAccessExecutionRole",
        "AWSXrayWriteOnlyAccess",
    }
    for name, function in of_type(resources, "AWS::Lambda::Function").items():
        role = resources[function["Properties"]["Role"]["Fn::GetAtt"][0]]["Properties"]
        arns = role["ManagedPolicyArns"]
        managed = {str(a).rsplit("/", 1)[1] for a in arns if isinstance(a, str)}
        read = {a["Ref"] for a in arns if isinstance(a, dict)}
        assert len(managed) + len(read) == len(arns), name
        # The queue consumer also gets SAM's SQS policy for its event source.
        queue = {"AWSLambdaSQSQueueExecutionRole"} if name == "ImportUsersFunction" else set()
        assert managed <= runtime | queue, name
        assert "AWSLambdaVPCAccessExecutionRole" in managed, name
        expected = read_policies_for(name)
        assert read == expected, name
        assert not role.get("Policies"), f"{name} has inline policies"


@pytest.mark.parametrize("parameters", [{}, {"Stage": "prod", "SnapStart": "enabled"}])
def test_a_change_of_the_shared_layer_alone_publishes_a_new_version_of_every_function(
    parameters: dict[str, str],
) -> None:
    # Given the same template transformed for two builds of the shared layer (a deployment
    # that changed only shared/)
    before = transformed(parameters)["Resources"]
    after = transformed(parameters, layer_build="next")["Resources"]

    # Then every alias points at a version that is new in the second transform: the alias
    # `live` (and with SnapStart, its snapshot) runs the new layer, not only $LATEST
    aliases = of_type(before, "AWS::Lambda::Alias")
    assert aliases
    for name, alias in aliases.items():
        old = alias["Properties"]["FunctionVersion"]["Fn::GetAtt"][0]
        new = after[name]["Properties"]["FunctionVersion"]["Fn::GetAtt"][0]
        assert old != new, name
        assert after[new]["Type"] == "AWS::Lambda::Version", name


def test_every_function_carries_the_secrets_extension_switch_and_layer_together() -> None:
    # Given the transform with the extension's layer given
    arn = (
        "arn:aws:lambda:eu-west-1:015030872274:layer:"
        "AWS-Parameters-and-Secrets-Lambda-Extension-Arm64:18"
    )
    resources = transformed({"Stage": "prod", "SecretsExtensionLayerArn": arn})["Resources"]
    layer = {
        "Fn::If": [
            "UseSecretsExtension",
            {"Ref": "SecretsExtensionLayerArn"},
            {"Ref": "AWS::NoValue"},
        ]
    }
    switch = {"Fn::If": ["UseSecretsExtension", "true", "false"]}

    # Then every function (the migrations' too) has both, decided by the same condition, so a
    # published version holds the layer exactly when it holds the switch that makes code use it
    lambdas = of_type(resources, "AWS::Lambda::Function")
    assert len(lambdas) == len(functions())
    for name, function in lambdas.items():
        properties = function["Properties"]
        assert properties["Layers"][-1] == layer, name
        assert len(properties["Layers"]) == 2, name  # noqa: PLR2004 - the domain layer and it
        assert properties["Environment"]["Variables"]["SECRETS_EXTENSION"] == switch, name
