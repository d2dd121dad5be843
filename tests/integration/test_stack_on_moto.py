"""The transformed template's resources that moto's CloudFormation can create, created.

Each deployment mode is rendered (conditions decided), SAM-transformed, then cut down to the
resources moto implements and whose references all stay inside that set; the cut is asserted
too, so the list of what no emulator here can create is part of the test (and of docs/testing.md).
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from typing import Any, Final

import boto3
import pytest
from moto import mock_aws

from tests.transformed import transformed
from tests.unit.test_deploy_modes import (
    BRING_YOUR_OWN,
    GIVEN_DB_SECRET,
    GIVEN_JWT_SECRET,
    Rendered,
    references,
)
from tests.unit.test_template import functions as serverless_functions

#: Resource types of the transformed template that moto's CloudFormation creates.
EMULATED: Final = frozenset(
    {
        "AWS::EC2::VPC",
        "AWS::EC2::Subnet",
        "AWS::EC2::RouteTable",
        "AWS::EC2::SubnetRouteTableAssociation",
        "AWS::EC2::SecurityGroup",
        "AWS::EC2::SecurityGroupIngress",
        "AWS::EC2::VPCEndpoint",
        "AWS::IAM::Role",
        "AWS::IAM::ManagedPolicy",
        "AWS::Lambda::Function",
        "AWS::Lambda::Version",
        "AWS::Lambda::LayerVersion",
        "AWS::Lambda::Permission",
        "AWS::Lambda::EventSourceMapping",
        "AWS::Logs::LogGroup",
        "AWS::SNS::Topic",
        "AWS::SQS::Queue",
        "AWS::CloudWatch::Dashboard",
        "AWS::RDS::DBSubnetGroup",
    }
)
#: What it cannot create (so neither what depends on them), by mode: checked by AWS only.
NOT_EMULATED: Final = frozenset(
    {
        "AWS::ApiGatewayV2::Api",
        "AWS::ApiGatewayV2::Stage",
        "AWS::Lambda::Alias",
        "AWS::Lambda::EventInvokeConfig",
        "AWS::CodeDeploy::Application",
        "AWS::CodeDeploy::DeploymentGroup",
        "AWS::CloudWatch::Alarm",
        "AWS::SNS::Subscription",
        "AWS::SecretsManager::Secret",
        "AWS::RDS::DBCluster",
        "AWS::RDS::DBInstance",
        "AWS::RDS::DBProxy",
        "AWS::RDS::DBProxyTargetGroup",
        "AWS::EC2::SecurityGroupEgress",
        "Custom::DatabaseMigrations",
    }
)
ARTIFACTS: Final = "artifacts"


def emulatable(parameters: dict[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """The part of the rendered, transformed template moto can create, and what was left out."""
    rendered = Rendered(parameters, raw=transformed(parameters))
    resources = rendered.resources
    keep = {name for name, res in resources.items() if res["Type"] in EMULATED}
    while True:  # drop what refers to something dropped, until nothing changes
        orphans = {n for n in keep if (references(resources[n]) & set(resources)) - keep}
        if not orphans:
            break
        keep -= orphans
    kept: dict[str, Any] = {}
    for name in keep:
        resource = {k: v for k, v in resources[name].items() if k not in {"Condition", "DependsOn"}}
        depends = resources[name].get("DependsOn", [])
        depends = [depends] if isinstance(depends, str) else depends
        if [d for d in depends if d in keep]:
            resource["DependsOn"] = [d for d in depends if d in keep]
        kept[name] = resource
    outputs = {
        name: {"Value": out["Value"]}
        for name, out in rendered.outputs.items()
        if not (references(out) & set(resources)) - keep
    }
    template = {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Parameters": rendered.raw["Parameters"],
        "Resources": kept,
        "Outputs": outputs,
    }
    dropped = {name: res["Type"] for name, res in resources.items() if name not in keep}
    return template, dropped


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "eu-west-1",
    }.items():
        monkeypatch.setenv(key, value)
    with mock_aws():
        yield


def create(template: dict[str, Any], parameters: dict[str, str]) -> dict[str, str]:
    """Create the stack in moto (code zips uploaded first); its outputs."""
    s3 = boto3.client("s3")
    s3.create_bucket(
        Bucket=ARTIFACTS, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
    )
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        archive.writestr("app.py", "def lambda_handler(event, context):\n    return None\n")
    for res in template["Resources"].values():
        content = res["Properties"].get("Code") or res["Properties"].get("Content")
        if res["Type"].startswith("AWS::Lambda::") and content:
            s3.put_object(Bucket=ARTIFACTS, Key=content["S3Key"], Body=code.getvalue())
    cloudformation = boto3.client("cloudformation")
    cloudformation.create_stack(
        StackName="blog-api-dev",
        TemplateBody=json.dumps(template),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
        Capabilities=["CAPABILITY_IAM"],
    )
    (stack,) = cloudformation.describe_stacks(StackName="blog-api-dev")["Stacks"]
    assert stack["StackStatus"] == "CREATE_COMPLETE", stack.get("StackStatusReason")
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}


@pytest.mark.slow
def test_the_created_network_queues_and_topic_come_up_with_their_outputs(aws: None) -> None:
    # Given the default mode (everything created), cut down to what moto creates
    template, dropped = emulatable({})
    assert set(dropped.values()) <= NOT_EMULATED | EMULATED
    assert {
        "Vpc",
        "PrivateSubnetA",
        "PrivateSubnetB",
        "S3GatewayEndpoint",
        "SecretsManagerEndpoint",
        "FunctionSecurityGroup",
        "ImportUsersQueue",
        "AlarmTopic",
    } <= set(template["Resources"])
    # When it is created
    outputs = create(template, {})
    # Then the outputs name the network, and it is the private one the template describes
    assert {
        "VpcId",
        "PrivateSubnetIds",
        "FunctionSecurityGroupId",
        "ImportUsersQueueUrl",
        "ImportUsersDeadLetterQueueUrl",
        "AlarmTopicArn",
        "SharedLayerArn",
    } <= set(outputs)
    ec2 = boto3.client("ec2")
    subnet_ids = outputs["PrivateSubnetIds"].split(",")
    subnets = ec2.describe_subnets(SubnetIds=subnet_ids)["Subnets"]
    assert {s["VpcId"] for s in subnets} == {outputs["VpcId"]}
    assert len({s["AvailabilityZone"] for s in subnets}) == 2
    # (MapPublicIpOnLaunch: moto's subnets ignore it; test_deploy_modes checks the template.)
    vpc_filter = [{"Name": "vpc-id", "Values": [outputs["VpcId"]]}]
    endpoints = ec2.describe_vpc_endpoints(Filters=vpc_filter)["VpcEndpoints"]
    assert {(e["ServiceName"].rsplit(".", 1)[1], e["VpcEndpointType"]) for e in endpoints} == {
        ("s3", "Gateway"),
        ("secretsmanager", "Interface"),
    }
    assert not ec2.describe_internet_gateways(
        Filters=[{"Name": "attachment.vpc-id", "Values": [outputs["VpcId"]]}]
    )["InternetGateways"]
    # The interface endpoint accepts HTTPS from the functions' group only (moto keeps ingress
    # rules; it ignores a group's egress rules, which test_deploy_modes checks in the template).
    (interface,) = [e for e in endpoints if e["VpcEndpointType"] == "Interface"]
    (group,) = ec2.describe_security_groups(GroupIds=[g["GroupId"] for g in interface["Groups"]])[
        "SecurityGroups"
    ]
    (rule,) = group["IpPermissions"]
    assert (rule["FromPort"], rule["ToPort"]) == (443, 443)
    assert [p["GroupId"] for p in rule["UserIdGroupPairs"]] == [outputs["FunctionSecurityGroupId"]]
    assert boto3.client("sqs").get_queue_attributes(
        QueueUrl=outputs["ImportUsersQueueUrl"], AttributeNames=["RedrivePolicy"]
    )["Attributes"]["RedrivePolicy"]


@pytest.mark.slow
def test_the_functions_of_a_bring_your_own_stack_come_up_wired_to_the_given_resources(
    aws: None,
) -> None:
    # Given your own network, database secret and signing key
    template, dropped = emulatable(BRING_YOUR_OWN)
    assert set(dropped.values()) - EMULATED <= NOT_EMULATED
    functions = {
        n for n, r in template["Resources"].items() if r["Type"] == "AWS::Lambda::Function"
    }
    assert functions == set(serverless_functions())
    # When the stack is created
    outputs = create(template, BRING_YOUR_OWN)
    # Then every function reads the given secrets in the given subnets (moto drops a function's
    # Layers and Architectures: test_template checks them in the template)
    assert outputs["DatabaseSecretArn"] == GIVEN_DB_SECRET
    assert outputs["JwtSecretArn"] == GIVEN_JWT_SECRET
    client = boto3.client("lambda")
    deployed = client.list_functions()["Functions"]
    assert len(deployed) == len(functions)
    for function in deployed:
        config = client.get_function_configuration(FunctionName=function["FunctionName"])
        env = config["Environment"]["Variables"]
        assert env["DB_SECRET_ARN"] == GIVEN_DB_SECRET
        assert env["JWT_SECRET_ARN"] == GIVEN_JWT_SECRET
        assert env["DB_SSL_CA_FILE"] == "/opt/python/blog/certs/rds-ca-bundle.pem"
        assert config["Runtime"] == "python3.13"
        assert sorted(config["VpcConfig"]["SubnetIds"]) == ["subnet-0aaa", "subnet-0bbb"]
    assert outputs["MigrationsFunctionName"] in {f["FunctionName"] for f in deployed}
    # The queue's event source mapping targets the alias, which moto cannot create: left out.
    assert dropped["ImportUsersFunctionQueue"] == "AWS::Lambda::EventSourceMapping"
    assert (
        boto3.client("sqs").get_queue_attributes(
            QueueUrl=outputs["ImportUsersQueueUrl"], AttributeNames=["VisibilityTimeout"]
        )["Attributes"]["VisibilityTimeout"]
        == "360"
    )
