"""template.yaml rendered as CloudFormation would for each deployment mode.

Conditions and ``Fn::If`` are evaluated for a set of parameter values; references stay symbolic,
so a test can tell a created resource (``Ref``/``GetAtt`` of a resource) from a given one (``Ref``
of a parameter). Modes: everything created (dev and prod) and everything brought (with and
without an RDS Proxy endpoint of one's own).
"""

from __future__ import annotations

import re
from typing import Any, Final

import pytest

from tests.unit.test_template import REPO, read_policies_for, template

NO_VALUE: Final = object()
PSEUDO: Final = {
    "AWS::Region",
    "AWS::StackName",
    "AWS::Partition",
    "AWS::URLSuffix",
    "AWS::AccountId",
    "AWS::NoValue",
}

GIVEN_DB_SECRET: Final = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:blog-db-AbCdEf"
GIVEN_JWT_SECRET: Final = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:blog-jwt-AbCdEf"
BRING_YOUR_OWN: Final = {
    "VpcSubnetIds": "subnet-0aaa,subnet-0bbb",
    "VpcSecurityGroupIds": "sg-0ccc",
    "DbSecretArn": GIVEN_DB_SECRET,
    "JwtSecretArn": GIVEN_JWT_SECRET,
}
MODES: Final = {
    "created-dev": {},
    "created-prod": {"Stage": "prod"},
    "given-dev": BRING_YOUR_OWN,
    "given-prod-proxy": {**BRING_YOUR_OWN, "Stage": "prod", "DbProxyEndpoint": "proxy.example"},
}
#: What the stack creates when the parameters are empty, and the parameters that replace them.
CREATED: Final = {
    "Vpc",
    "PrivateSubnetA",
    "PrivateSubnetB",
    "FunctionSecurityGroup",
    "DbCluster",
    "DbProxy",
    "JwtSigningKey",
}
GIVEN: Final = {
    "VpcSubnetIds",
    "VpcSecurityGroupIds",
    "DbSecretArn",
    "JwtSecretArn",
    "DbProxyEndpoint",
}
CERTS: Final = "/opt/python/blog/certs/"


class Rendered:
    """The template for one set of parameter values."""

    def __init__(self, overrides: dict[str, str], raw: dict[str, Any] | None = None) -> None:
        self.raw = raw if raw is not None else template()
        self.params: dict[str, Any] = {}
        for name, spec in self.raw["Parameters"].items():
            value = str(overrides.get(name, spec.get("Default", "")))
            self.params[name] = value.split(",") if spec["Type"] == "CommaDelimitedList" else value
        self._conditions: dict[str, bool] = {}
        self.resources = {
            name: self.resolve(res)
            for name, res in self.raw["Resources"].items()
            if "Condition" not in res or self.condition(res["Condition"])
        }
        self.outputs = {
            name: self.resolve(out)
            for name, out in self.raw["Outputs"].items()
            if "Condition" not in out or self.condition(out["Condition"])
        }
        self.globals = self.resolve(self.raw.get("Globals", {}).get("Function", {}))

    def condition(self, name: str) -> bool:
        if name not in self._conditions:
            self._conditions[name] = bool(self.value(self.raw["Conditions"][name]))
        return self._conditions[name]

    def value(self, node: Any) -> Any:  # noqa: PLR0911 - one branch per function
        """A condition or rule expression's value (parameters and mappings only)."""
        if not isinstance(node, dict):
            return node
        ((fn, arg),) = node.items()
        if fn == "Ref":
            return self.params[arg]
        if fn in ("Condition", "Fn::Condition"):
            return self.condition(arg)
        if fn == "Fn::Equals":
            return self.value(arg[0]) == self.value(arg[1])
        if fn == "Fn::Not":
            return not self.value(arg[0])
        if fn == "Fn::And":
            return all(self.value(a) for a in arg)
        if fn == "Fn::Or":
            return any(self.value(a) for a in arg)
        if fn == "Fn::Join":
            return arg[0].join(self.value(arg[1]))
        if fn == "Fn::FindInMap":
            return self.raw["Mappings"][self.value(arg[0])][self.value(arg[1])][self.value(arg[2])]
        if fn == "Fn::EachMemberEquals":
            return all(member == self.value(arg[1]) for member in self.value(arg[0]))
        raise AssertionError(f"cannot evaluate {fn}")

    def resolve(self, node: Any) -> Any:
        """``node`` with every Fn::If decided and FindInMap looked up; references kept."""
        if isinstance(node, list):
            return [v for v in (self.resolve(x) for x in node) if v is not NO_VALUE]
        if not isinstance(node, dict):
            return node
        if set(node) == {"Fn::If"}:
            cond, yes, no = node["Fn::If"]
            return self.resolve(yes if self.condition(cond) else no)
        if node == {"Ref": "AWS::NoValue"}:
            return NO_VALUE
        if set(node) == {"Fn::FindInMap"}:
            return self.value(node)
        resolved = {k: self.resolve(v) for k, v in node.items()}
        return {k: v for k, v in resolved.items() if v is not NO_VALUE}


def references(node: Any) -> set[str]:
    """Names of the resources and parameters that ``node`` refers to."""
    found: set[str] = set()
    if isinstance(node, list):
        for item in node:
            found |= references(item)
    elif isinstance(node, dict):
        for key, value in node.items():
            if key == "Ref":
                found.add(str(value).split(".")[0])
            elif key == "Fn::GetAtt":
                found.add(value[0])
            elif key == "Fn::Sub":
                text, variables = (value, {}) if isinstance(value, str) else value
                names = {m.split(".")[0] for m in re.findall(r"\$\{([^}!]+)\}", text)}
                found |= (names - set(variables)) | references(variables)
            else:
                found |= references(value)
    return found


@pytest.fixture(scope="module", params=list(MODES), ids=list(MODES))
def rendered(request: pytest.FixtureRequest) -> Rendered:
    rendered = Rendered(MODES[request.param])
    rendered.mode = request.param  # type: ignore[attr-defined]
    return rendered


def functions(r: Rendered) -> dict[str, dict[str, Any]]:
    return {
        name: res["Properties"]
        for name, res in r.resources.items()
        if res["Type"] == "AWS::Serverless::Function"
    }


# ------------------------------------------------------------------------------- wiring


def test_every_reference_names_something_that_exists_in_this_mode(rendered: Rendered) -> None:
    known = set(rendered.resources) | set(rendered.params) | PSEUDO
    dangling = {
        name: sorted(references(res) - known)
        for name, res in [*rendered.resources.items(), ("Globals", rendered.globals)]
        if references(res) - known
    }
    dangling |= {
        f"Outputs.{name}": sorted(references(out) - known)
        for name, out in rendered.outputs.items()
        if references(out) - known
    }
    assert not dangling


def test_functions_name_the_created_or_the_given_resources_never_both(rendered: Rendered) -> None:
    created_mode = rendered.mode.startswith("created")  # type: ignore[attr-defined]
    wiring = {
        "environment": rendered.globals["Environment"],
        "network": rendered.globals["VpcConfig"],
        "DbSecretReadPolicy": rendered.resources["DbSecretReadPolicy"],
        "JwtKeyReadPolicy": rendered.resources["JwtKeyReadPolicy"],
    }
    for what, node in wiring.items():
        named = references(node)
        if created_mode:
            assert not named & GIVEN, f"{what} names given {named & GIVEN}"
        else:
            assert not named & CREATED, f"{what} names created {named & CREATED}"
    env = rendered.globals["Environment"]["Variables"]
    if created_mode:
        assert env["DB_SECRET_ARN"] == {"Fn::GetAtt": ["DbCluster", "MasterUserSecret.SecretArn"]}
        assert env["JWT_SECRET_ARN"] == {"Ref": "JwtSigningKey"}
        assert env["DB_NAME"] == rendered.resources["DbCluster"]["Properties"]["DatabaseName"]
        assert env["DB_PORT"] == {"Fn::GetAtt": ["DbCluster", "Endpoint.Port"]}
        proxy = "DbProxy" in rendered.resources
        assert env["DB_HOST"] == (
            {"Fn::GetAtt": ["DbProxy", "Endpoint"]}
            if proxy
            else {"Fn::GetAtt": ["DbCluster", "Endpoint.Address"]}
        )
        assert rendered.globals["VpcConfig"]["SecurityGroupIds"] == [
            {"Ref": "FunctionSecurityGroup"}
        ]
    else:
        assert env["DB_SECRET_ARN"] == {"Ref": "DbSecretArn"}
        assert env["JWT_SECRET_ARN"] == {"Ref": "JwtSecretArn"}
        assert rendered.globals["VpcConfig"] == {
            "SubnetIds": {"Ref": "VpcSubnetIds"},
            "SecurityGroupIds": {"Ref": "VpcSecurityGroupIds"},
        }
        assert not CREATED & set(rendered.resources)


def test_no_function_can_read_a_secret_it_does_not_need(rendered: Rendered) -> None:
    read_policies = {"DbSecretReadPolicy": "DB_SECRET_ARN", "JwtKeyReadPolicy": "JWT_SECRET_ARN"}
    env = rendered.globals["Environment"]["Variables"]
    for policy, variable in read_policies.items():
        (statement,) = rendered.resources[policy]["Properties"]["PolicyDocument"]["Statement"]
        # The policy grants exactly the secret that the functions are told to read.
        assert statement["Resource"] == env[variable], policy
    for name, props in functions(rendered).items():
        policies = props.get("Policies") or []
        names = {
            p["Ref"]
            for p in policies
            if isinstance(p, dict) and str(p.get("Ref")).endswith("ReadPolicy")
        }
        # Any other policy a function needs (a queue to send to, say) grants no secret.
        others = [p for p in policies if not (isinstance(p, dict) and p.get("Ref") in names)]
        assert "secretsmanager" not in str(others).lower(), f"{name}: {others}"
        expected = read_policies_for(name)
        assert names == expected, name
    # Nothing else in the stack grants reading a secret, except the proxy's own role.
    for name, res in rendered.resources.items():
        if name in read_policies or name == "DbProxyRole":
            continue
        assert "secretsmanager:GetSecretValue" not in str(res), name


def violated(r: Rendered) -> list[str]:
    """The template's Rules that refuse ``r``'s parameters (CloudFormation would not deploy)."""
    return [
        name
        for name, rule in r.raw["Rules"].items()
        if r.value(rule["RuleCondition"])
        and not all(r.value(a["Assert"]) for a in rule["Assertions"])
    ]


def test_the_rules_refuse_a_mix_of_created_and_given(rendered: Rendered) -> None:
    assert violated(rendered) == []
    assert violated(Rendered({"DbSecretArn": GIVEN_DB_SECRET})) == [
        "CreatedNetworkHoldsCreatedDatabase"
    ]
    assert violated(Rendered({"VpcSubnetIds": "subnet-1", "VpcSecurityGroupIds": "sg-1"})) == [
        "OwnNetworkNeedsOwnDatabase"
    ]


def test_functions_trust_exactly_the_ca_that_signs_their_endpoint(rendered: Rendered) -> None:
    env = rendered.globals["Environment"]["Variables"]
    through_proxy = "DbProxy" in rendered.resources or "DbProxyEndpoint" in references(
        env.get("DB_HOST")
    )
    expected = "amazon-root-ca.pem" if through_proxy else "rds-ca-bundle.pem"
    assert env["DB_SSL_CA_FILE"] == CERTS + expected
    assert env["DB_SSLMODE"] == {"Ref": "DbSslMode"}
    assert rendered.params["DbSslMode"] == "verify-full"
    # The layer (shared/ becomes /opt/python/) carries the file.
    assert (REPO / "shared" / env["DB_SSL_CA_FILE"].removeprefix("/opt/python/")).is_file()


# ------------------------------------------------------------------------------- created mode


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_the_created_database_is_encrypted_snapshotted_and_sized_per_stage(stage: str) -> None:
    r = Rendered({"Stage": stage})
    cluster = r.resources["DbCluster"]
    props = cluster["Properties"]
    assert (cluster["DeletionPolicy"], cluster["UpdateReplacePolicy"]) == ("Snapshot", "Snapshot")
    assert props["Engine"] == "aurora-postgresql"
    assert props["StorageEncrypted"] is True
    assert props["ManageMasterUserPassword"] is True
    assert "MasterUserPassword" not in props
    assert int(props["BackupRetentionPeriod"]) >= 1
    assert r.resources["DbWriterInstance"]["Properties"]["DBInstanceClass"] == "db.serverless"
    assert r.resources["DbWriterInstance"]["Properties"]["PubliclyAccessible"] is False
    scaling = props["ServerlessV2ScalingConfiguration"]
    if stage == "prod":
        assert props["DeletionProtection"] is True
        assert float(scaling["MinCapacity"]) >= 0.5
        assert "SecondsUntilAutoPause" not in scaling
        proxy = r.resources["DbProxy"]["Properties"]
        assert proxy["RequireTLS"] is True
        assert proxy["Auth"][0]["SecretArn"] == props_secret()
        assert proxy["RoleArn"] == {"Fn::GetAtt": ["DbProxyRole", "Arn"]}
        (statement,) = r.resources["DbProxyRole"]["Properties"]["Policies"][0]["PolicyDocument"][
            "Statement"
        ]
        assert statement["Resource"] == props_secret()
    else:
        assert props["DeletionProtection"] is False
        assert float(scaling["MinCapacity"]) == 0  # auto-pause
        assert int(scaling["SecondsUntilAutoPause"]) > 0
        assert "DbProxy" not in r.resources  # a proxy's connections would keep it awake


def props_secret() -> dict[str, Any]:
    return {"Fn::GetAtt": ["DbCluster", "MasterUserSecret.SecretArn"]}


def test_proxy_can_be_switched_on_for_dev_and_off_for_prod() -> None:
    assert "DbProxy" in Rendered({"DbProxyMode": "enabled"}).resources
    assert "DbProxy" not in Rendered({"Stage": "prod", "DbProxyMode": "disabled"}).resources


def test_created_network_is_private_with_the_endpoints_the_functions_need() -> None:
    r = Rendered({})
    kinds = {res["Type"] for res in r.resources.values()}
    assert not kinds & {"AWS::EC2::InternetGateway", "AWS::EC2::NatGateway", "AWS::EC2::Route"}
    endpoints = {
        res["Properties"]["ServiceName"]["Fn::Sub"].rsplit(".", 1)[1]: res["Properties"]
        for res in r.resources.values()
        if res["Type"] == "AWS::EC2::VPCEndpoint"
    }
    assert set(endpoints) == {"s3", "secretsmanager"}
    assert endpoints["s3"]["VpcEndpointType"] == "Gateway"
    assert endpoints["s3"]["RouteTableIds"] == [{"Ref": "PrivateRouteTable"}]
    (s3_rule,) = endpoints["s3"]["PolicyDocument"]["Statement"]
    assert s3_rule["Action"] == "s3:PutObject"  # only CloudFormation's response objects
    assert "cloudformation-custom-resource-response-" in s3_rule["Resource"]["Fn::Sub"]
    assert endpoints["secretsmanager"]["PrivateDnsEnabled"] is True
    subnets = [res for res in r.resources.values() if res["Type"] == "AWS::EC2::Subnet"]
    assert len(subnets) == 2
    assert all(s["Properties"]["MapPublicIpOnLaunch"] is False for s in subnets)
    assert {str(s["Properties"]["AvailabilityZone"]["Fn::Select"][0]) for s in subnets} == {
        "0",
        "1",
    }
    with_xray = Rendered({"XRayEndpoint": "true"})
    assert "XRayInterfaceEndpoint" in with_xray.resources


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_security_groups_let_through_postgres_and_https_and_nothing_else(stage: str) -> None:
    r = Rendered({"Stage": stage})
    sg = r.resources
    function_out = sg["FunctionSecurityGroup"]["Properties"]["SecurityGroupEgress"]
    assert {(rule["IpProtocol"], rule["FromPort"], rule["ToPort"]) for rule in function_out} == {
        ("tcp", 443, 443)
    }
    to_db = sg["FunctionToDatabaseEgress"]["Properties"]
    (db_in,) = sg["DatabaseSecurityGroup"]["Properties"]["SecurityGroupIngress"]
    assert (to_db["FromPort"], db_in["FromPort"], db_in["ToPort"]) == (5432, 5432, 5432)
    if stage == "prod":  # functions -> proxy -> database
        assert to_db["DestinationSecurityGroupId"] == {"Ref": "DbProxySecurityGroup"}
        assert db_in["SourceSecurityGroupId"] == {"Ref": "DbProxySecurityGroup"}
        (proxy_in,) = sg["DbProxySecurityGroup"]["Properties"]["SecurityGroupIngress"]
        assert proxy_in["SourceSecurityGroupId"] == {"Ref": "FunctionSecurityGroup"}
    else:
        assert to_db["DestinationSecurityGroupId"] == {"Ref": "DatabaseSecurityGroup"}
        assert db_in["SourceSecurityGroupId"] == {"Ref": "FunctionSecurityGroup"}
    (endpoint_in,) = sg["EndpointSecurityGroup"]["Properties"]["SecurityGroupIngress"]
    assert (endpoint_in["FromPort"], endpoint_in["SourceSecurityGroupId"]) == (
        443,
        {"Ref": "FunctionSecurityGroup"},
    )
    for name in ("DatabaseSecurityGroup", "EndpointSecurityGroup"):
        (out,) = sg[name]["Properties"]["SecurityGroupEgress"]
        assert out["CidrIp"] == "127.0.0.1/32", f"{name} may send nowhere"


def test_the_migrations_run_after_the_routes_and_the_database_they_need(rendered: Rendered) -> None:
    props = rendered.resources["DatabaseMigrations"]["Properties"]
    named = references(props)
    if rendered.mode.startswith("created"):  # type: ignore[attr-defined]
        assert {"S3GatewayEndpoint", "SecretsManagerEndpoint", "PrivateSubnetARouteTable"} <= named
        assert (
            "DbProxyTargetGroup" if "DbProxy" in rendered.resources else "DbWriterInstance"
        ) in named
    else:
        assert named == {"MigrationsFunction"}


def test_a_jwt_key_is_generated_only_when_none_is_given() -> None:
    key = Rendered({}).resources["JwtSigningKey"]["Properties"]["GenerateSecretString"]
    assert int(key["PasswordLength"]) >= 32 and key["ExcludePunctuation"] is True
    assert "SecretStringTemplate" not in key  # the SecretString is the key itself
    assert "JwtSigningKey" not in Rendered({"JwtSecretArn": GIVEN_JWT_SECRET}).resources


# ------------------------------------------------------------------------------- operations


def test_alarms_notify_the_topic_and_the_email_is_optional() -> None:
    r = Rendered({"AlarmEmail": "ops@example.com"})
    alarms = {n: res for n, res in r.resources.items() if res["Type"] == "AWS::CloudWatch::Alarm"}
    assert {
        "ApiErrorRateAlarm",
        "ApiLatencyAlarm",
        "FunctionErrorsAlarm",
        "FunctionThrottlesAlarm",
        "AuthorizerErrorsAlarm",
        "ImportErrorsAlarm",
        "ImportDeadLetterAlarm",
        "ImportQueueAgeAlarm",
        "DatabaseCapacityAlarm",
        "DatabaseConnectionsAlarm",
    } <= set(alarms)
    for name, alarm in alarms.items():
        assert alarm["Properties"]["AlarmActions"] == [{"Ref": "AlarmTopic"}], name
    assert r.resources["AlarmEmailSubscription"]["Properties"]["Endpoint"] == {"Ref": "AlarmEmail"}
    assert "AlarmEmailSubscription" not in Rendered({}).resources
    assert "DatabaseCapacityAlarm" not in Rendered(BRING_YOUR_OWN).resources  # not our cluster


def test_every_function_but_the_migrations_deploys_gradually_behind_the_alias() -> None:
    raw = template()
    globals_ = raw["Globals"]["Function"]
    assert globals_["AutoPublishAlias"] == "live"
    alarms = {a["Ref"] for a in globals_["DeploymentPreference"]["Alarms"]}
    assert alarms == {"FunctionErrorsAlarm", "AuthorizerErrorsAlarm", "ImportErrorsAlarm"}
    assert raw["Mappings"]["Stages"]["dev"]["DeploymentType"] == "AllAtOnce"
    assert raw["Mappings"]["Stages"]["prod"]["DeploymentType"].startswith("Canary")
    for name, res in raw["Resources"].items():
        if res["Type"] != "AWS::Serverless::Function":
            continue
        props = res["Properties"]
        assert not {"AutoPublishAlias", "DeploymentPreference"} & set(props), name
        ignored = set(res.get("IgnoreGlobals") or []) - {"SnapStart"}  # see the SnapStart test
        assert ignored == (
            {"AutoPublishAlias", "DeploymentPreference"} if name == "MigrationsFunction" else set()
        ), name
    authorizer = raw["Resources"]["HttpApi"]["Properties"]["Auth"]["Authorizers"][
        "BearerAuthorizer"
    ]
    assert authorizer["FunctionArn"] == {"Ref": "AuthorizerFunction.Alias"}


EXTENSION_ARN = (
    "arn:aws:lambda:eu-west-1:015030872274:layer:"
    "AWS-Parameters-and-Secrets-Lambda-Extension-Arm64:18"
)


@pytest.mark.parametrize("given", [False, True], ids=["sdk", "extension"])
def test_secrets_are_read_through_the_extension_exactly_when_its_layer_is_given(
    given: bool,
) -> None:
    # Given: the template rendered with or without the extension's layer
    r = Rendered({"SecretsExtensionLayerArn": EXTENSION_ARN} if given else {})

    # Then: every function gets the layer and the switch that makes the code use it, or neither
    expected = [{"Ref": "SharedLayer"}, *([{"Ref": "SecretsExtensionLayerArn"}] if given else [])]
    assert r.globals["Layers"] == expected
    assert r.globals["Environment"]["Variables"]["SECRETS_EXTENSION"] == str(given).lower()
    for name, res in r.resources.items():
        if res["Type"] == "AWS::Serverless::Function":
            assert "Layers" not in res["Properties"], name
            assert "Layers" not in (r.raw["Resources"][name].get("IgnoreGlobals") or []), name
    # And: the parameter takes a layer version ARN or nothing
    import re

    pattern = re.compile(r.raw["Parameters"]["SecretsExtensionLayerArn"]["AllowedPattern"])
    assert pattern.fullmatch(EXTENSION_ARN) and pattern.fullmatch("")
    assert not pattern.fullmatch("AWS-Parameters-and-Secrets-Lambda-Extension-Arm64")


def test_snapstart_with_the_secrets_extension_is_refused_at_deploy() -> None:
    assert violated(Rendered({"SnapStart": "enabled"})) == []
    assert violated(Rendered({"SecretsExtensionLayerArn": EXTENSION_ARN})) == []
    both = Rendered({"SnapStart": "enabled", "SecretsExtensionLayerArn": EXTENSION_ARN})
    assert violated(both) == ["SecretsExtensionWithoutSnapStart"]


def _request_path_functions(raw: dict[str, Any]) -> set[str]:
    """The functions someone waits for: every route's, and the authorizer in front of most."""
    return {
        name
        for name, res in raw["Resources"].items()
        if res["Type"] == "AWS::Serverless::Function"
        and (
            name == "AuthorizerFunction"
            or any(e["Type"] == "HttpApi" for e in (res["Properties"].get("Events") or {}).values())
        )
    }


@pytest.mark.parametrize("switch", ["disabled", "enabled"])
def test_snapstart_applies_to_the_request_path_functions_only_when_enabled(switch: str) -> None:
    # Given the template rendered with the switch, in both stages
    raw = template()
    parameter = raw["Parameters"]["SnapStart"]
    assert (parameter["Default"], parameter["AllowedValues"]) == (
        "disabled",
        ["disabled", "enabled"],
    )
    on_the_request_path = _request_path_functions(raw)
    assert "AuthorizerFunction" in on_the_request_path and len(on_the_request_path) > 10
    for stage in ("dev", "prod"):
        r = Rendered({"SnapStart": switch, "Stage": stage})
        for name, res in r.resources.items():
            if res["Type"] != "AWS::Serverless::Function":
                continue
            # Then a function on a request's path gets it from the Globals, the others ignore it
            ignored = "SnapStart" in (raw["Resources"][name].get("IgnoreGlobals") or [])
            assert ignored == (name not in on_the_request_path), name
            assert "SnapStart" not in res["Properties"], f"{name} sets its own SnapStart"
            effective = None if ignored else r.globals.get("SnapStart")
            expected = {"ApplyOn": "PublishedVersions"} if switch == "enabled" else None
            if name in on_the_request_path:
                assert effective == expected, name
                # SnapStart snapshots published versions only: what the alias invokes
                assert r.globals["AutoPublishAlias"] == "live", name
            else:
                assert effective is None, name


# ------------------------------------------------------------------------------- samconfig


def samconfig_overrides() -> dict[str, dict[str, str]]:
    """``parameter_overrides`` of every samconfig.toml section, as name -> value."""
    import shlex
    import tomllib

    config = tomllib.loads((REPO / "samconfig.toml").read_text())
    found = {}
    for env, commands in config.items():
        if not isinstance(commands, dict):
            continue
        for command, section in commands.items():
            overrides = section.get("parameters", {}).get("parameter_overrides")
            if overrides is not None:
                found[f"{env}.{command}"] = dict(w.split("=", 1) for w in shlex.split(overrides))
    return found


def test_samconfig_deploys_every_stage_with_nothing_to_fill_in() -> None:
    sections = samconfig_overrides()
    assert {"default.deploy", "dev.deploy", "prod.deploy"} <= set(sections)
    params = template()["Parameters"]
    for section, overrides in sections.items():
        assert set(overrides) <= set(params), section
        for name, value in overrides.items():
            spec = params[name]
            assert "REPLACE" not in value, f"{section}: {name} is a placeholder"
            if "AllowedValues" in spec:
                assert value in [str(v) for v in spec["AllowedValues"]], f"{section}: {name}"
            if "AllowedPattern" in spec:
                assert re.fullmatch(spec["AllowedPattern"], value), f"{section}: {name}"
        # The default path is the created-everything mode: no resource needs a value typed in.
        rendered = Rendered(overrides)
        assert {"Vpc", "DbCluster", "JwtSigningKey"} <= set(rendered.resources), section
    assert sections["prod.deploy"]["Stage"] == "prod"
    assert sections["default.deploy"]["Stage"] == sections["dev.deploy"]["Stage"] == "dev"
    assert "REPLACE_WITH" not in (REPO / "samconfig.toml").read_text()


def test_the_dashboard_is_valid_json_over_the_stacks_own_resources(rendered: Rendered) -> None:
    import json

    text, variables = rendered.resources["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    named = {m.split(".")[0] for m in re.findall(r"\$\{([^}]+)\}", text)}
    assert named - set(variables) - PSEUDO <= set(rendered.resources)
    body = json.loads(re.sub(r"\$\{[^}]+\}", "x", text))
    titles = {widget["properties"]["title"].split(" ")[0] for widget in body["widgets"]}
    assert {"API", "Functions:", "Import", "Database"} <= titles
