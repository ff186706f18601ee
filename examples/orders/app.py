"""Using the constructs in another project: an EventBridge rule to an OptimizedFunction.

A complete CDK app: this file, ``cdk.json`` (the app command and the feature flags) and
``store_order/handler.py`` (the function's code). Copy the folder into your project, install
the constructs into its environment (``requirements.txt`` pins them; docs/constructs.md says
from where) and run ``cdk synth`` there.
"""

from pathlib import Path

from aws_cdk import App, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from constructs_lib.alarm_topic import AlarmTopic
from constructs_lib.monitoring import PipelineMonitoring
from constructs_lib.optimized_function import OptimizedFunction, ProvisionedConcurrencyScaling

#: The function's code, next to this file (so the app synthesizes from any working directory).
HANDLER_CODE = Path(__file__).resolve().parent / "store_order"


class OrdersStack(Stack):
    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        table = dynamodb.TableV2(
            self,
            "Orders",
            partition_key=dynamodb.Attribute(name="pk", type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name="sk", type=dynamodb.AttributeType.STRING),
        )
        fn = OptimizedFunction(
            self,
            "StoreOrder",
            # Any lambda.Function prop: merged over the construct's defaults (arm64, 30 s, ...).
            function_props=lambda_.FunctionProps(
                code=lambda_.Code.from_asset(str(HANDLER_CODE)),
                handler="handler.lambda_handler",
                runtime=lambda_.Runtime.PYTHON_3_14,
                memory_size=256,  # required: size it from Max Memory Used
                environment={"TABLE_NAME": table.table_name},
            ),
            # A fixed number, or auto scaling that alone owns the alias's provisioned concurrency.
            provisioned_concurrency=ProvisionedConcurrencyScaling(min_capacity=1, max_capacity=5),
        )
        table.grant(fn.role, "dynamodb:PutItem")  # grants happen at the wiring site
        rule = events.Rule(
            self, "OrderPlaced", event_pattern=events.EventPattern(detail_type=["OrderPlaced"])
        )
        rule.add_target(targets.LambdaFunction(fn.alias))  # always invoke the alias
        topic = AlarmTopic(self, "Alarms")
        monitoring = PipelineMonitoring(self, "Monitoring", alarm_action=topic, dashboard=False)
        monitoring.monitor_function("StoreOrder", fn)  # reads what fn does: alias, retries, ...


if __name__ == "__main__":
    app = App()  # writes to cdk.out/, where the CDK CLI reads it
    OrdersStack(app, "OrdersExample")
    app.synth()
