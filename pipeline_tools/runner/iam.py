"""IAM, enforced in-process from the synthesized template: a small evaluator of a role's policy.

moto does not enforce IAM, so a missing or extra grant would pass every test. The runner asks
this evaluator, before every AWS call a handler makes and before each call Lambda makes for the
function (``sqs:SendMessage`` to its DLQ, ``lambda:InvokeFunction`` of its destination), whether
the function's role allows it, as IAM would for an identity-based policy
(https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic.html):

* an explicit ``Deny`` that matches wins;
* otherwise an ``Allow`` that matches allows;
* otherwise the request is implicitly denied.

Actions match case-insensitively with ``*`` and ``?`` wildcards; resources match ARNs with the
same wildcards. A DynamoDB ``TransactWriteItems`` is authorised per item: ``Put`` needs
``dynamodb:PutItem``, ``Update`` ``dynamodb:UpdateItem``, ``Delete`` ``dynamodb:DeleteItem`` and
``ConditionCheck`` ``dynamodb:ConditionCheckItem``, each on its table
(https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/transaction-apis-iam.html).

A Lambda request is authorised against the resource form Lambda documents for its action
(https://docs.aws.amazon.com/lambda/latest/dg/lambda-api-permissions-ref.html, "Function
resource names" and "Function actions"): Lambda compares the policy's resource with both the
``FunctionName`` and the ``Qualifier`` of the request, so a grant on ``fn:live`` does not cover a
request naming ``fn``, nor the reverse. The alias actions (``GetAlias``, ``UpdateAlias``, ...)
act on the *function*: they authorise against the unqualified ARN, the alias being a parameter.
The provisioned-concurrency actions act on a version or an alias: the qualified ARN.

Not covered, and refused where a template uses them: ``Condition``, ``NotAction``,
``NotResource``. Not modelled at all: permissions boundaries, SCPs, session policies, and
resource-based policies (the DLQ's and the aliases' own policies).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from pipeline_tools.template import Physical, StackTemplate, TemplateError, resolve

#: Physical values of template resources: logical ID -> {"Ref": ..., "Arn": ...}.

TRANSACT_ITEM_ACTIONS = {
    "Put": "dynamodb:PutItem",
    "Update": "dynamodb:UpdateItem",
    "Delete": "dynamodb:DeleteItem",
    "ConditionCheck": "dynamodb:ConditionCheckItem",
}


@dataclass(frozen=True)
class Statement:
    effect: str
    actions: tuple[str, ...]
    resources: tuple[str, ...]

    def matches(self, action: str, resource: str) -> bool:
        return any(fnmatch.fnmatchcase(action.lower(), a.lower()) for a in self.actions) and any(
            fnmatch.fnmatchcase(resource, r) for r in self.resources
        )


@dataclass(frozen=True)
class RolePolicy:
    """The identity policy of one role, with every resource resolved to an ARN."""

    role: str
    statements: tuple[Statement, ...]
    #: Table name -> table ARN, to authorise DynamoDB calls, which name a table.
    table_arns: Mapping[str, str]
    #: Where the role's calls go, to build the ARN of a resource a request names by name.
    region: str = "us-east-1"
    account: str = "123456789012"

    def allows(self, action: str, resource: str) -> bool:
        if any(s.effect == "Deny" and s.matches(action, resource) for s in self.statements):
            return False
        return any(s.effect == "Allow" and s.matches(action, resource) for s in self.statements)

    def check(self, action: str, resource: str, operation: str) -> None:
        """Raise ``AccessDeniedException`` as an AWS API would, when not allowed."""
        if not self.allows(action, resource):
            raise ClientError(
                {
                    "Error": {
                        "Code": "AccessDeniedException",
                        "Message": (
                            f"User: {self.role} is not authorized to perform: {action} on "
                            f"resource: {resource} because no identity-based policy allows the "
                            f"{action} action"
                        ),
                    }
                },
                operation,
            )

    @classmethod
    def of(
        cls,
        model: StackTemplate,
        role_id: str,
        physical: Physical,
        *,
        region: str,
        account: str,
        partition: str = "aws",
    ) -> RolePolicy:
        pseudo = {"AWS::Region": region, "AWS::AccountId": account, "AWS::Partition": partition}
        statements = []
        for raw in model.role_statements(role_id):
            unsupported = {"Condition", "NotAction", "NotResource", "NotPrincipal"} & set(raw)
            if unsupported:
                raise TemplateError(f"{role_id}: the runner's IAM evaluator has no {unsupported}")
            statements.append(
                Statement(
                    effect=raw["Effect"],
                    actions=tuple(_as_list(raw["Action"])),
                    resources=tuple(
                        resolve(r, physical, role_id, pseudo) for r in _as_list(raw["Resource"])
                    ),
                )
            )
        tables = {
            physical[t]["Ref"]: physical[t]["Arn"]
            for t in model.resources("AWS::DynamoDB::Table")
            if t in physical and "Arn" in physical[t]
        }
        return cls(
            f"arn:{partition}:sts::{account}:assumed-role/{role_id}",
            tuple(statements),
            tables,
            region,
            account,
        )

    def check_call(self, service: str, operation: str, params: Mapping[str, Any]) -> None:
        """Raise as AWS would when any (action, resource) the call needs is not allowed."""
        for action, resource in requests(self, service, operation, params):
            self.check(action, resource, operation)

    def enforce_on(self, client: Any) -> None:
        """Check every call ``client`` makes against this policy, before it is sent."""
        service = client.meta.service_model.service_name

        def check(params: dict[str, Any], model: Any, **_: Any) -> None:
            self.check_call(service, model.name, params)

        client.meta.events.register(f"provide-client-params.{service}", check)


#: Lambda actions that act on the function itself: authorised against the unqualified ARN.
LAMBDA_FUNCTION_ACTIONS = frozenset(
    {"CreateAlias", "DeleteAlias", "GetAlias", "UpdateAlias", "ListAliases", "PublishVersion"}
)
#: Lambda operations whose IAM action has another name.
LAMBDA_ACTION_NAMES = {"Invoke": "InvokeFunction"}
#: SQS's batch operations have no IAM actions of their own: "setting permissions for
#: SendMessage, DeleteMessage, or ChangeMessageVisibility sets permissions for the corresponding
#: batch versions" (https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-batch-api.html).
SQS_BATCH_ACTIONS = {
    "SendMessageBatch": "SendMessage",
    "DeleteMessageBatch": "DeleteMessage",
    "ChangeMessageVisibilityBatch": "ChangeMessageVisibility",
}


def requests(
    policy: RolePolicy, service: str, operation: str, params: Mapping[str, Any]
) -> Iterator[tuple[str, str]]:
    """The (action, resource) pairs IAM authorises for one API call."""
    if service == "dynamodb" and operation == "TransactWriteItems":
        for item in params.get("TransactItems", []):
            for kind, request in item.items():
                yield TRANSACT_ITEM_ACTIONS[kind], _table_arn(request, policy.table_arns)
    elif service == "dynamodb" and "TableName" in params:
        yield f"dynamodb:{operation}", _table_arn(params, policy.table_arns)
    elif service == "lambda" and "FunctionName" in params:
        action = f"lambda:{LAMBDA_ACTION_NAMES.get(operation, operation)}"
        yield action, lambda_resource(policy, operation, params)
    elif service == "sqs" and "QueueUrl" in params:
        # https://sqs.<region>.amazonaws.com/<account>/<name>: the queue's ARN
        *_, account, name = str(params["QueueUrl"]).rstrip("/").split("/")
        action = f"sqs:{SQS_BATCH_ACTIONS.get(operation, operation)}"
        yield action, f"arn:aws:sqs:{policy.region}:{account}:{name}"
    elif service == "cloudwatch" and operation == "DescribeAlarms" and params.get("AlarmNames"):
        for name in params["AlarmNames"]:
            yield (
                "cloudwatch:DescribeAlarms",
                (f"arn:aws:cloudwatch:{policy.region}:{policy.account}:alarm:{name}"),
            )
    else:
        yield f"{service}:{operation}", "*"


def lambda_resource(policy: RolePolicy, operation: str, params: Mapping[str, Any]) -> str:
    """The function ARN a Lambda request is authorised against (module docstring).

    ``FunctionName`` may be a name, a partial ARN or an ARN, each with a ``:qualifier``; a
    ``Qualifier`` parameter qualifies it too.
    """
    parts = str(params["FunctionName"]).split(":")
    region, account = policy.region, policy.account
    if parts[0] == "arn":  # arn:aws:lambda:region:account:function:name[:qualifier]
        region, account, parts = parts[3], parts[4], parts[6:]
    elif len(parts) >= 3 and parts[1] == "function":  # account:function:name[:qualifier]
        account, parts = parts[0], parts[2:]
    function, qualifier = parts[0], (parts[1] if len(parts) > 1 else "")
    qualifier = params.get("Qualifier") or qualifier
    unqualified = f"arn:aws:lambda:{region}:{account}:function:{function}"
    if operation in LAMBDA_FUNCTION_ACTIONS or not qualifier:
        return unqualified
    return f"{unqualified}:{qualifier}"


def _table_arn(request: Mapping[str, Any], arn_of_table: Mapping[str, str]) -> str:
    name = request["TableName"]
    return arn_of_table.get(name, name)


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]
