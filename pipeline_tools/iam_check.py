"""Check that each function's role grants exactly the AWS API actions its code calls.

Usage: ``python -m pipeline_tools.iam_check cdk.out/DataPipeline-dev.template.json lambda_src``

*Code side*: every ``.py`` file of a stage's package is parsed, and of ``pipeline_common`` what
the package imports from it: a module imported whole, or the imported names with every
top-level name they use in turn. The services come from ``boto3.client("...")`` calls, and each
method called, or passed on to be called (``retry.call(deadline, name, client.put_item, ...)``),
whose name is an operation of one of those services (per botocore's own service model) is one
action.
``transact_write_items`` is authorised per item, so its ``Put``/``Update``/``Delete``/
``ConditionCheck`` entries become ``PutItem``/``UpdateItem``/``DeleteItem``/
``ConditionCheckItem``; they must be written literally for the check to see them.

*Template side*: every action on the function's role, except exactly the grants Lambda itself
uses on the function's behalf, each action on its own resource: writing its own log group,
X-Ray segments, sending to its own dead-letter queue, invoking its on-success destination, and
reading the queue of its event source mapping (the batched path). Any other action, on any
resource, must be one the code calls.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import botocore.session
from botocore import xform_name

from pipeline_tools.runner.iam import SQS_BATCH_ACTIONS
from pipeline_tools.template import (
    FUNCTION,
    StackTemplate,
    load_template,
    ref_id,
    referenced,
    resources,
)
from serverless_stack.stages import SUPPORT_METADATA_KEY

SHARED_PACKAGE = "pipeline_common"
#: Support functions whose code calls AWS, by their ``pipeline:support`` label: the package
#: under ``lambda_src`` that holds their handler.
SUPPORT_PACKAGES = {"count-rollup": "rollup"}
TRANSACT_ITEM_ACTIONS = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
    "Get": "GetItem",
}


#: Shared modules that only one handler of a stage reaches, by that handler's name: the SQS
#: calls of ``pipeline_common/batch.py`` run only under ``batch_handler`` (the batched path), so
#: they count for a function whose ``Handler`` is that one, and for no other.
ENTRY_ONLY_MODULES = {"batch": "batch_handler"}


class UnreadableCall(ValueError):
    """A call whose actions cannot be told from the source (say where and why)."""


@dataclass(frozen=True)
class StageCheck:
    stage: str
    code: frozenset[str]
    granted: frozenset[str]

    @property
    def ok(self) -> bool:
        return self.code == self.granted

    def describe(self) -> str:
        if self.ok:
            return f"{self.stage}: OK {sorted(self.code) or '(no AWS API calls)'}"
        return (
            f"{self.stage}: MISMATCH granted but not called {sorted(self.granted - self.code)}; "
            f"called but not granted {sorted(self.code - self.granted)}"
        )


def code_actions(
    package_dirs: list[Path], shared: Path | None = None, handler: str = "lambda_handler"
) -> frozenset[str]:
    """The IAM actions the code in ``package_dirs`` calls, with what it uses of ``shared``
    (the ``pipeline_common`` directory), run as ``handler`` (the function's handler name)."""
    trees = [
        (f, ast.parse(f.read_text(), str(f))) for d in package_dirs for f in sorted(d.rglob("*.py"))
    ]
    used = _shared_nodes(trees, shared) if shared is not None else []
    used = [
        (file, node) for file, node in used if ENTRY_ONLY_MODULES.get(file.stem, handler) == handler
    ]
    service_trees = [t for _, t in trees] + [t for _, t in used]
    services = {s for tree in service_trees for s in _boto3_services(tree)}
    loader = botocore.session.get_session()
    operations: dict[str, tuple[str, str]] = {}
    for service in services:
        model = loader.get_service_model(service)
        prefix = model.signing_name or model.endpoint_prefix
        for operation in model.operation_names:
            operations[xform_name(operation)] = (prefix, operation)
    actions: set[str] = set()
    for file, tree in [*trees, *used]:
        actions |= _node_actions(file, tree, operations)
    # SQS's batch operations are authorised as their single forms (runner.iam).
    batch_forms = {f"sqs:{batch}": f"sqs:{one}" for batch, one in SQS_BATCH_ACTIONS.items()}
    return frozenset(batch_forms.get(action, action) for action in actions)


def _node_actions(file: Path, tree: ast.AST, operations: dict[str, tuple[str, str]]) -> set[str]:
    calls = {
        id(node.func): node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
    }
    actions: set[str] = set()
    for node in ast.walk(tree):
        # A method called (``client.put_item(...)``) or handed to a caller that calls it
        # (``retry.call(deadline, name, client.put_item, ...)``).
        if not (isinstance(node, ast.Attribute) and node.attr in operations):
            continue
        prefix, operation = operations[node.attr]
        if operation == "TransactWriteItems":
            call = calls.get(id(node))
            if call is None:
                raise UnreadableCall(
                    f"{file}:{node.lineno}: transact_write_items must be called directly"
                )
            actions |= {f"{prefix}:{a}" for a in _transact_actions(call, file)}
        else:
            actions.add(f"{prefix}:{operation}")
    return actions


def _shared_nodes(
    trees: Sequence[tuple[Path, ast.AST]], shared: Path
) -> list[tuple[Path, ast.AST]]:
    """What the package uses of the shared package: whole modules it imports, or the names it
    imports from one and every top-level name those use, transitively."""
    wanted: dict[str, set[str] | None] = {}  # module -> names (None: all of it)
    for _, tree in trees:
        for node in ast.walk(tree):
            for module, names in _shared_imports(node, shared.name):
                if names is None or wanted.get(module, set()) is None:
                    wanted[module] = None
                else:
                    wanted.setdefault(module, set()).update(names)  # type: ignore[union-attr]
    used: list[tuple[Path, ast.AST]] = []
    for module, names in sorted(wanted.items()):
        file = shared / f"{module}.py"
        if file.is_file():
            tree = ast.parse(file.read_text(), str(file))
            used += [(file, node) for node in _reachable(tree, names)]
    return used


def _shared_imports(node: ast.AST, package: str) -> list[tuple[str, set[str] | None]]:
    """The shared package's modules ``node`` imports, each with the names it takes (None: the
    whole module)."""
    if isinstance(node, ast.ImportFrom) and node.module == package:
        return [(alias.name, None) for alias in node.names]
    if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(f"{package}."):
        return [(str(node.module).split(".", 1)[1], {a.name for a in node.names})]
    if isinstance(node, ast.Import):
        return [
            (alias.name.split(".", 1)[1], None)
            for alias in node.names
            if alias.name.startswith(f"{package}.")
        ]
    return []


def _reachable(tree: ast.Module, names: set[str] | None) -> list[ast.AST]:
    """The module's statements outside functions and classes, and the top-level definitions
    ``names`` reach through the names their bodies use (all of them for ``None``)."""
    definitions = {
        node.name: node
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
    }
    rest: list[ast.AST] = [node for node in tree.body if node not in definitions.values()]
    todo = list(definitions) if names is None else [n for n in names if n in definitions]
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for node in ast.walk(definitions[name]):
            if isinstance(node, ast.Name) and node.id in definitions:
                todo.append(node.id)
    return rest + [definitions[n] for n in sorted(seen)]


#: What Lambda itself does with the function's role, by the resource it does it to.
LAMBDA_OWN_NEEDS = {
    "log group": frozenset({"logs:CreateLogStream", "logs:PutLogEvents"}),
    "dead-letter queue": frozenset({"sqs:SendMessage"}),
    "destination": frozenset({"lambda:InvokeFunction"}),
    # An SQS event source mapping reads its queue with the function's role
    # (https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-configure.html).
    "event source queue": frozenset(
        {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"}
    ),
    "*": frozenset({"xray:PutTraceSegments", "xray:PutTelemetryRecords"}),
}


def granted_actions(template: dict[str, Any], function_id: str) -> frozenset[str]:
    """Actions on the role of ``function_id``, less exactly what Lambda itself needs.

    Lambda's own needs are matched action by action on their resource: writing to the function's
    log group, X-Ray segments, sending to its dead-letter queue, invoking its on-success
    destination. Anything else on the role, on any resource (its own included), is a grant the
    code must call: ``sqs:ReceiveMessage`` on the DLQ or ``lambda:UpdateAlias`` on the next
    stage's alias is reported, not excused.
    """
    stack = StackTemplate.of(template)
    fn = stack.resources(FUNCTION)[function_id]["Properties"]
    configs = [
        c["Properties"]
        for c in stack.resources("AWS::Lambda::EventInvokeConfig").values()
        if ref_id(c["Properties"]["FunctionName"]) == function_id
    ]
    needs: dict[str | None, frozenset[str]] = {
        ref_id(fn.get("LoggingConfig", {}).get("LogGroup")): LAMBDA_OWN_NEEDS["log group"],
        ref_id(fn.get("DeadLetterConfig", {}).get("TargetArn")): LAMBDA_OWN_NEEDS[
            "dead-letter queue"
        ],
        "*": LAMBDA_OWN_NEEDS["*"],
    }
    for config in configs:
        for outcome in config.get("DestinationConfig", {}).values():
            needs[ref_id(outcome.get("Destination"))] = LAMBDA_OWN_NEEDS["destination"]
    for queue_id in _event_source_queues(stack, function_id):
        needs[queue_id] = LAMBDA_OWN_NEEDS["event source queue"]
    actions: set[str] = set()
    for statement in stack.role_statements(str(ref_id(fn.get("Role")))):
        listed = _as_list(statement["Action"])
        for target in _as_list(statement["Resource"]):
            key = "*" if target == "*" else ref_id(target)
            actions |= {a for a in listed if a not in needs.get(key, frozenset())}
    return frozenset(actions)


def _event_source_queues(stack: StackTemplate, function_id: str) -> list[str | None]:
    """The queues that event source mappings read for ``function_id`` or one of its aliases."""
    invoked = {function_id} | {
        alias_id
        for alias_id, alias in stack.resources("AWS::Lambda::Alias").items()
        if ref_id(alias["Properties"]["FunctionName"]) == function_id
    }
    return [
        ref_id(mapping["Properties"]["EventSourceArn"])
        for mapping in stack.resources("AWS::Lambda::EventSourceMapping").values()
        if referenced(mapping["Properties"]["FunctionName"]) & invoked
    ]


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def check(template: dict[str, Any], lambda_src: Path) -> list[StageCheck]:
    """Compare code and grants for every function of ``template``."""
    results = []
    for stage in StackTemplate.of(template).stages.values():
        handler = str(stage.properties.get("Handler", "")).rpartition(".")[2]
        results.append(
            StageCheck(
                stage.name,
                code_actions([lambda_src / stage.name], lambda_src / SHARED_PACKAGE, handler),
                granted_actions(template, stage.function_id),
            )
        )
    for function_id, fn in resources(template, FUNCTION).items():
        package = SUPPORT_PACKAGES.get(fn.get("Metadata", {}).get(SUPPORT_METADATA_KEY))
        if package is not None:
            results.append(
                StageCheck(
                    package,
                    code_actions([lambda_src / package], lambda_src / SHARED_PACKAGE),
                    granted_actions(template, function_id),
                )
            )
    return sorted(results, key=lambda r: r.stage)


def _boto3_services(tree: ast.AST) -> set[str]:
    services = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("client", "resource")
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "boto3"
        ):
            if not (node.args and isinstance(node.args[0], ast.Constant)):
                raise UnreadableCall(
                    f"line {node.lineno}: boto3.{node.func.attr}() needs a literal service name"
                )
            services.add(str(node.args[0].value))
    return services


def _transact_actions(call: ast.Call, file: Path) -> set[str]:
    items = next((k.value for k in call.keywords if k.arg == "TransactItems"), None)
    if not isinstance(items, ast.List):
        raise UnreadableCall(f"{file}:{call.lineno}: TransactItems must be a literal list")
    found = set()
    for element in items.elts:
        if not isinstance(element, ast.Dict):
            raise UnreadableCall(f"{file}:{call.lineno}: each transact item must be a literal dict")
        for key in element.keys:
            if isinstance(key, ast.Constant) and key.value in TRANSACT_ITEM_ACTIONS:
                found.add(TRANSACT_ITEM_ACTIONS[key.value])
    return found


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print(
            "usage: python -m pipeline_tools.iam_check <template.json> <lambda_src>",
            file=sys.stderr,
        )
        return 2
    results = check(load_template(args[0]), Path(args[1]))
    for result in results:
        print(result.describe())
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
