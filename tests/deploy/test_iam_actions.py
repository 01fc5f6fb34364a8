"""The roles grant exactly the actions the code calls: derived here from the code itself.

Every AWS call in worker/, stages/ and api_lambda/ goes through a client named after its service
(``self._s3``, ``aws.sqs``, ``self._ddb`` ...), or names its operation in a string (a
paginator, a presigned URL, Rekognition's operations chosen at run time). Both are found with
botocore's own list of each service's operations and mapped to the IAM actions that authorize
them; a call added to the code without its permission, or a permission nobody calls, fails here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any

import botocore.session
from botocore import xform_name

ROOT = Path(__file__).resolve().parents[2]
# The name a client goes by in the code, and its service.
CLIENTS = {
    "s3": "s3",
    "sqs": "sqs",
    "sns": "sns",
    "ddb": "dynamodb",
    "dynamodb": "dynamodb",
    "rekognition": "rekognition",
}
_CALL = re.compile(r"\b_?(s3|sqs|sns|ddb|dynamodb|rekognition)\.([a-z0-9_]+)\(")
_CLIENT = re.compile(r"[._](s3|sqs|sns|ddb|dynamodb|rekognition)\b")
_QUOTED = re.compile(r"""["']([a-z][a-z0-9_]+)["']""")
# Client methods that are no AWS operation of their own: the operation they name is quoted.
_META = {"get_paginator", "generate_presigned_url", "can_paginate", "get_waiter", "close"}
# Calls whose IAM actions are not named after the operation (the S3 and SQS user guides'
# tables of actions). GetObject and HeadObject need ListBucket as well: without it a missing
# key answers 403, not the 404 the code reads as "gone".
ACTIONS = {
    ("s3", "head_object"): {"s3:GetObject", "s3:ListBucket"},
    ("s3", "get_object"): {"s3:GetObject", "s3:ListBucket"},
    ("s3", "list_objects_v2"): {"s3:ListBucket"},
    ("s3", "delete_objects"): {"s3:DeleteObject"},
    ("s3", "create_multipart_upload"): {"s3:PutObject"},
    ("s3", "upload_part"): {"s3:PutObject"},
    ("s3", "complete_multipart_upload"): {"s3:PutObject"},
    ("s3", "list_parts"): {"s3:ListMultipartUploadParts"},
    # s3transfer: PutObject or the multipart calls, and an abort when a part fails.
    ("s3", "upload_file"): {"s3:PutObject", "s3:AbortMultipartUpload"},
    # A presigned POST acts as its signer.
    ("s3", "generate_presigned_post"): {"s3:PutObject"},
    ("sqs", "delete_message_batch"): {"sqs:DeleteMessage"},
    ("sqs", "change_message_visibility_batch"): {"sqs:ChangeMessageVisibility"},
    ("sqs", "send_message_batch"): {"sqs:SendMessage"},
    # A transaction is authorized as its parts (worker/live_photos.py: updates and a check).
    ("dynamodb", "transact_write_items"): {"dynamodb:UpdateItem", "dynamodb:ConditionCheckItem"},
}
# S3's transfer methods that boto3 adds to the client.
_S3_TRANSFER = {
    "upload_file",
    "upload_fileobj",
    "download_file",
    "download_fileobj",
    "generate_presigned_post",
}


@cache
def _operations(service: str) -> dict[str, str]:
    """Client method name to operation name, from botocore's model of the service."""
    model = botocore.session.get_session().get_service_model(service)
    return {xform_name(name): name for name in model.operation_names}


def _action(service: str, method: str) -> set[str]:
    if (service, method) in ACTIONS:
        return ACTIONS[(service, method)]
    return {f"{service}:{_operations(service)[method]}"}


def derived_actions(folders: Iterable[str]) -> dict[str, set[str]]:
    """IAM action to the files whose calls need it."""
    needed: dict[str, set[str]] = {}
    for folder in folders:
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = path.relative_to(ROOT).parts
            if "dev" in parts:  # the laptop stack provisions moto
                continue
            if "ops" in parts and not folder.endswith("ops"):  # run by operators, not tasks
                continue
            text = path.read_text()
            calls: set[tuple[str, str]] = set()
            for client, method in _CALL.findall(text):
                service = CLIENTS[client]
                if method in _META:
                    continue
                known = method in _operations(service) or (
                    service == "s3" and method in _S3_TRANSFER
                )
                assert known, f"{path}: {client}.{method}() is no {service} operation"
                calls.add((service, method))
            # A quoted operation counts in a file that holds that service's client.
            holds = {CLIENTS[client] for client in _CLIENT.findall(text)}
            for word in set(_QUOTED.findall(text)):
                owners = [service for service in holds if word in _operations(service)]
                assert len(owners) <= 1, f"{path}: {word!r} is an operation of {owners}"
                calls.update((owner, word) for owner in owners)
            for service, method in calls:
                for action in _action(service, method):
                    needed.setdefault(action, set()).add(str(path.relative_to(ROOT)))
    return needed


def _granted(template: Any, role: str, policy: str | None) -> dict[str, list[Any]]:
    """Action to the resources one inline policy of a role (or a managed policy) grants."""
    if policy is None:
        document = template.properties(role)["PolicyDocument"]
    else:
        policies = template.properties(role)["Policies"]
        chosen = next(entry for entry in policies if entry["PolicyName"] == policy)
        document = chosen["PolicyDocument"]
    granted: dict[str, list[Any]] = {}
    for statement in document["Statement"]:
        assert statement["Effect"] == "Allow"
        actions = (
            statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        )
        resources = (
            statement["Resource"]
            if isinstance(statement["Resource"], list)
            else [statement["Resource"]]
        )
        for action in actions:
            granted.setdefault(action, []).extend(resources)
    return granted


def _code_services(granted: dict[str, list[Any]]) -> set[str]:
    prefixes = {service for service in CLIENTS.values()}
    return {action for action in granted if action.split(":")[0] in prefixes}


def test_the_task_role_grants_what_the_worker_calls(template: Any) -> None:
    granted = _granted(template, "TaskRole", "worker")
    needed = derived_actions(["worker", "stages"])
    # The search finds calls at all (a method call, and an operation named in a string).
    assert "sqs:ReceiveMessage" in needed
    assert "rekognition:DetectLabels" in needed
    missing = set(needed) - set(granted)
    assert not missing, {action: needed[action] for action in missing}
    assert _code_services(granted) == set(needed), "granted but never called"
    # Not a boto call: the ECS agent's task-protection endpoint acts with the task role.
    assert set(granted) - set(needed) == {"ecs:UpdateTaskProtection"}


def test_the_operator_policy_grants_what_the_commands_call(template: Any) -> None:
    granted = _granted(template, "OperatorPolicy", None)
    needed = derived_actions(["worker/ops"])
    assert "sqs:StartMessageMoveTask" in needed
    assert "dynamodb:BatchGetItem" in needed
    missing = set(needed) - set(granted)
    assert not missing, {action: needed[action] for action in missing}
    # Not a call of the code: the progress command `mediamill dlq redrive --all` prints.
    assert set(granted) - set(needed) == {"sqs:ListMessageMoveTasks"}
    # Read-only but for the dead letters: no write to an item or an object.
    assert not {a for a in granted if a.startswith(("dynamodb:Update", "dynamodb:Put", "s3:Put"))}


def test_the_function_role_grants_what_the_api_calls(template: Any) -> None:
    granted = _granted(template, "ApiFunctionRole", "api")
    needed = derived_actions(["api_lambda", "mediamill_core"])
    missing = set(needed) - set(granted)
    assert not missing, {action: needed[action] for action in missing}
    assert _code_services(granted) == set(needed), "granted but never called"
    # Not calls of the code: the runtime writes logs, and active tracing writes segments.
    assert set(granted) - set(needed) == {
        "logs:CreateLogStream",
        "logs:PutLogEvents",
        "xray:PutTraceSegments",
        "xray:PutTelemetryRecords",
    }


# Actions that AWS cannot scope to a resource.
UNSCOPED = {
    "rekognition:DetectLabels",
    "rekognition:DetectModerationLabels",
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
    "ecr:GetAuthorizationToken",
}


def test_only_unscopable_actions_are_granted_on_every_resource(template: Any) -> None:
    for role in template.of_type("AWS::IAM::Role"):
        for policy in template.properties(role).get("Policies", []):
            for action, resources in _granted(template, role, policy["PolicyName"]).items():
                if "*" in resources:
                    assert action in UNSCOPED, f"{role} grants {action} on every resource"


def test_each_action_is_on_this_stacks_own_resources(template: Any) -> None:
    worker = _granted(template, "TaskRole", "worker")
    assert worker["s3:GetObject"] == [
        {"Fn::Sub": "${OriginalsBucket.Arn}/originals/*"},
        {"Fn::Sub": "${RenditionsBucket.Arn}/*"},
    ]
    assert worker["s3:PutObject"] == [{"Fn::Sub": "${RenditionsBucket.Arn}/*"}]
    assert worker["dynamodb:Query"] == [
        {"Fn::Sub": "${MediaTable.Arn}/index/owed"},
        {"Fn::Sub": "${MediaTable.Arn}/index/by-owner"},
    ]
    assert worker["sns:Publish"] == [{"Ref": "MediaEventsTopic"}]
    # Both lanes are consumed alike: a requeued backfill message goes back to the backfill queue.
    lanes = [{"Fn::GetAtt": [queue, "Arn"]} for queue in ("MediaQueue", "BackfillQueue")]
    for action in ("ReceiveMessage", "DeleteMessage", "ChangeMessageVisibility", "SendMessage"):
        assert all(lane in worker[f"sqs:{action}"] for lane in lanes), action
    dead_letters = [
        {"Fn::GetAtt": [queue, "Arn"]}
        for queue in ("MediaDeadLetterQueue", "BackfillDeadLetterQueue")
    ]
    # The sweep peeks at both DLQs, and nothing else touches them.
    assert sorted(map(str, worker["sqs:GetQueueUrl"])) == sorted(map(str, dead_letters))
    assert not [lane for lane in dead_letters if lane in worker["sqs:DeleteMessage"]]
    assert template.resolve(worker["ecs:UpdateTaskProtection"][0]) == (
        "arn:aws:ecs:eu-west-1:123456789012:task/<Cluster>/*"
    )
    api = _granted(template, "ApiFunctionRole", "api")
    assert api["s3:PutObject"] == [{"Fn::Sub": "${OriginalsBucket.Arn}/originals/*"}]
    assert api["dynamodb:Query"] == [{"Fn::Sub": "${MediaTable.Arn}/index/by-owner"}]
    # Only the worker writes renditions; only the API writes originals.
    assert "s3:PutObject" not in [
        a for a, r in api.items() if {"Fn::Sub": "${RenditionsBucket.Arn}/*"} in r
    ]


def test_the_collector_may_write_to_its_workspace_only_when_there_is_one(template: Any) -> None:
    policy = template.resources["TaskRoleRemoteWrite"]
    assert policy["Condition"] == "ManagedPrometheus"
    assert template.resources["PrometheusWorkspace"]["Condition"] == "ManagedPrometheus"
    (statement,) = policy["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Action"] == "aps:RemoteWrite"
    assert statement["Resource"] == {"Fn::GetAtt": ["PrometheusWorkspace", "Arn"]}
