"""The meter against hand-computed DynamoDB units: the 1 KB and 4 KB boundaries, transactions,
a failed conditional write; and Lambda's log-level filtering of EMF lines.

Sizing rules: https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/CapacityUnitCalculations.html
(item size = attribute names + values; 1 write unit per started KB, 1 read unit per started
4 KB, half when eventually consistent; transactions double both).
"""

from __future__ import annotations

import json

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from pipeline_tools.dynamodb_meter import DynamoDBMeter, item_bytes
from pipeline_tools.log_meter import LogMeter
from pipeline_tools.meter import StageUsage
from pipeline_tools.runner.provision import create_table
from pipeline_tools.sample_records import sample_records

TABLE = "meter-test"


def item(total_bytes: int, key: str = "k1") -> dict:
    """An item of exactly ``total_bytes``: "pk" (2) + key (2) + "sk" (2) + "x" (1) + "d" (1) + n."""
    return {"pk": {"S": key}, "sk": {"S": "x"}, "d": {"S": "a" * (total_bytes - 8)}}


@pytest.fixture
def dynamodb():
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        create_table(client, TABLE)
        metered = boto3.client("dynamodb", region_name="us-east-1")
        meter = DynamoDBMeter(client, ["pk", "sk"])
        meter.attach(metered)
        yield metered, meter


def test_item_size_counts_names_and_values():
    assert item_bytes(item(1024)) == 1024
    # "n" (1) + 12345 -> 5 significant digits -> 3 bytes + 1; "b" (1) + 3 raw bytes; "t" + 1
    assert (
        item_bytes({"n": {"N": "123.450"}, "b": {"B": b"abc"}, "t": {"BOOL": True}})
        == 1 + 4 + 1 + 3 + 1 + 1
    )
    # a map: 3 bytes + per element 1 + its name + its value
    assert item_bytes({"m": {"M": {"k": {"S": "vv"}}}}) == 1 + 3 + 1 + 1 + 2


@pytest.mark.parametrize(("size", "units"), [(1024, 1), (1025, 2), (2048, 2), (2049, 3)])
def test_put_costs_one_unit_per_started_kilobyte(dynamodb, size, units):
    client, meter = dynamodb
    client.put_item(TableName=TABLE, Item=item(size))
    assert meter.write_units == units


def test_overwriting_costs_the_larger_of_before_and_after(dynamodb):
    client, meter = dynamodb
    client.put_item(TableName=TABLE, Item=item(3000))  # 3 units
    client.put_item(TableName=TABLE, Item=item(100))  # the old 3,000-byte item: 3 units
    assert meter.write_units == 3 + 3


@pytest.mark.parametrize(
    ("size", "consistent", "units"),
    [(4096, False, 0.5), (4097, False, 1.0), (4096, True, 1.0), (4097, True, 2.0)],
)
def test_get_costs_per_started_4_kilobytes_half_when_eventually_consistent(
    dynamodb, size, consistent, units
):
    client, meter = dynamodb
    client.put_item(TableName=TABLE, Item=item(size))
    meter.write_units = 0
    # A projection returns less, but the read is charged on the whole item.
    client.get_item(
        TableName=TABLE,
        Key={"pk": {"S": "k1"}, "sk": {"S": "x"}},
        ConsistentRead=consistent,
        ProjectionExpression="pk",
    )
    assert meter.read_units == units


def test_a_transaction_costs_double(dynamodb):
    client, meter = dynamodb
    client.transact_write_items(
        TransactItems=[
            {"Put": {"TableName": TABLE, "Item": item(1500, "r1")}},  # 2 KB -> 2 x 2
            {
                "Update": {
                    "TableName": TABLE,
                    "Key": {"pk": {"S": "c1"}, "sk": {"S": "x"}},
                    "UpdateExpression": "ADD #n :one",
                    "ExpressionAttributeNames": {"#n": "count"},
                    "ExpressionAttributeValues": {":one": {"N": "1"}},
                }
            },  # a small counter -> 2 x 1
        ]
    )
    assert meter.write_units == 2 * 2 + 2 * 1


def test_a_failed_conditional_write_still_costs(dynamodb):
    client, meter = dynamodb
    client.put_item(TableName=TABLE, Item=item(1025))  # 2 units
    with pytest.raises(ClientError, match="ConditionalCheckFailed"):
        client.put_item(
            TableName=TABLE, Item=item(10), ConditionExpression="attribute_not_exists(pk)"
        )
    # Charged on the existing 1,025-byte item: 2 more units, though nothing was written.
    assert meter.write_units == 2 + 2


def test_a_cancelled_transaction_is_metered_as_if_it_ran(dynamodb):
    client, meter = dynamodb
    client.put_item(TableName=TABLE, Item=item(900, "r1"))  # 1 unit
    with pytest.raises(ClientError, match="TransactionCanceled"):
        client.transact_write_items(
            TransactItems=[
                {
                    "Put": {
                        "TableName": TABLE,
                        "Item": item(900, "r1"),
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                }
            ]
        )
    assert meter.write_units == 1 + 2 * 1


EMF = json.dumps(
    {
        "_aws": {
            "Timestamp": 0,
            "CloudWatchMetrics": [
                {
                    "Namespace": "DataPipeline",
                    "Dimensions": [["service"]],
                    "Metrics": [{"Name": "RecordsRejected"}],
                }
            ],
        },
        "service": "validator",
        "RecordsRejected": [1.0],
    }
)
INFO_LINE = json.dumps({"level": "INFO", "message": "hello"})
WARN_LINE = json.dumps({"level": "WARNING", "message": "careful"})


def test_lambda_keeps_emf_lines_at_info_and_drops_them_at_warn():
    """A JSON line without a ``level`` counts as INFO
    (https://docs.aws.amazon.com/lambda/latest/dg/monitoring-cloudwatchlogs-log-level.html):
    the reason the settings refuse an application log level above INFO."""
    output = "\n".join([EMF, INFO_LINE, WARN_LINE])
    at_info, at_warn = StageUsage(), StageUsage()
    info = LogMeter(
        {"LogFormat": "JSON", "ApplicationLogLevel": "INFO", "SystemLogLevel": "WARN"}, 512
    )
    info.account(output, at_info)
    warn = LogMeter(
        {"LogFormat": "JSON", "ApplicationLogLevel": "WARN", "SystemLogLevel": "WARN"}, 512
    )
    warn.account(output, at_warn)
    overhead = 26
    assert at_info.application_log_bytes == sum(
        len(line) + overhead for line in (EMF, INFO_LINE, WARN_LINE)
    )
    assert at_warn.application_log_bytes == len(WARN_LINE) + overhead
    assert at_info.system_log_bytes == at_warn.system_log_bytes == 0
    # Counted either way: filtering drops the line, and CloudWatch never sees the metric.
    assert info.metrics == {("DataPipeline", "RecordsRejected", (("service", "validator"),))}


def test_system_lines_follow_format_and_level():
    usage = {}
    for name, config in {
        "json-info": {"LogFormat": "JSON", "SystemLogLevel": "INFO"},
        "json-warn": {"LogFormat": "JSON", "SystemLogLevel": "WARN"},
        "text": {},
    }.items():
        usage[name] = StageUsage()
        LogMeter(config, 512).account("", usage[name])
    assert usage["json-warn"].log_events == 0
    assert usage["json-info"].log_events == 2  # platform.start and platform.report
    assert usage["text"].log_events == 3  # START, END, REPORT


def test_sample_records_are_valid_and_of_the_asked_size():
    from pipeline_common.contract import validate

    for record in sample_records(5, 1024):
        assert validate(record) == record
        assert 900 < len(json.dumps(record, separators=(",", ":"))) <= 1024
