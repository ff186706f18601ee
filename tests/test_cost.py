"""The cost report: hand-computed figures to the cent, and directions when settings change."""

from __future__ import annotations

import copy
import json

import pytest
from aws_cdk.assertions import Template

from pipeline_tools.cost import (
    CostInputError,
    Workload,
    load_prices,
    main,
    model_from_template,
    provisioned_floor,
    report,
)
from tests.conftest import cdk_context, synth_app

PRICES = load_prices()

SMALL_TEMPLATE = {
    "Resources": {
        "F1": {
            "Type": "AWS::Lambda::Function",
            "Metadata": {"pipeline:stage": "validator"},
            "Properties": {
                "Handler": "validator.handler.lambda_handler",
                "MemorySize": 1024,
                "Architectures": ["arm64"],
                "LoggingConfig": {"LogGroup": {"Ref": "G1"}},
                "DeadLetterConfig": {"TargetArn": {"Fn::GetAtt": ["Q", "Arn"]}},
            },
        },
        "F2": {
            "Type": "AWS::Lambda::Function",
            "Metadata": {"pipeline:stage": "processor"},
            "Properties": {
                "Handler": "processor.handler.lambda_handler",
                "MemorySize": 2048,
                "LoggingConfig": {"LogGroup": {"Ref": "G2"}},
            },
        },
        "A2": {
            "Type": "AWS::Lambda::Alias",
            "Properties": {
                "FunctionName": {"Ref": "F2"},
                "Name": "live",
                "ProvisionedConcurrencyConfig": {"ProvisionedConcurrentExecutions": 1},
            },
        },
        "G1": {"Type": "AWS::Logs::LogGroup", "Properties": {"RetentionInDays": 7}},
        "G2": {"Type": "AWS::Logs::LogGroup", "Properties": {}},
        "T": {"Type": "AWS::DynamoDB::Table", "Properties": {"BillingMode": "PAY_PER_REQUEST"}},
        "Q": {"Type": "AWS::SQS::Queue", "Properties": {}},
        "Alarm1": {"Type": "AWS::CloudWatch::Alarm", "Properties": {"MetricName": "Errors"}},
        "Alarm2": {
            "Type": "AWS::CloudWatch::Alarm",
            "Properties": {
                "Metrics": [
                    {"Id": "e", "Expression": "a + b"},
                    {"Id": "a", "MetricStat": {}},
                    {"Id": "b", "MetricStat": {}},
                ]
            },
        },
        "D": {"Type": "AWS::CloudWatch::Dashboard", "Properties": {}},
    }
}
SMALL_WORKLOAD = Workload(
    records_per_month=100_000,
    duration_ms={"validator": 100, "processor": 200},
    record_bytes=1900,
    log_bytes_per_invocation=2048,
    log_months=6,
    failed_record_ratio=0.1,
)


def items(result, baseline=False):
    return {
        i.name.split(" (")[0]: round(i.usd, 2)
        for i in (result.baseline_items if baseline else result.items)
    }


def test_small_stack_priced_by_hand_to_the_cent():
    result = report(SMALL_TEMPLATE, "small", SMALL_WORKLOAD, PRICES)
    # 100,000 validator + 90,000 processor invocations (10 % fail validation).
    assert items(result) == {
        "Lambda requests": 0.04,  # 190,000 / 1e6 x $0.20 = $0.038
        # validator: 100,000 x 0.1 s x 1 GiB = 10,000 GB-s x $0.0000133334 (arm64) = $0.1333
        # processor: 90,000 x 0.2 s x 2 GiB = 36,000 GB-s, all under provisioned concurrency,
        # x $0.0000097222 (x86 provisioned duration) = $0.3500;  total $0.4833
        "Lambda duration": 0.48,
        # 1 instance x 730 h x 3600 s x 2 GiB = 5,256,000 GB-s x $0.0000041667 = $21.9002
        "Provisioned concurrency": 21.90,
        "DynamoDB reads": 0.01,  # 90,000 x 0.5 RRU = 45,000 x $0.125/M = $0.0056
        # (1,900 + 200) bytes -> 3 KB; 2 x (3 + 1) = 8 WRU x 90,000 = 720,000 x $0.625/M = $0.45
        "DynamoDB writes": 0.45,
        "SQS requests": 0.01,  # 10,000 failures x 3 = 30,000 x $0.40/M = $0.012
        # 190,000 x 2,048 B = 0.36240 GiB x $0.50 = $0.1812
        "CloudWatch Logs ingestion": 0.18,
        # validator 0.19073 GiB x (7 / 30.4375) months + processor 0.17166 GiB x 6 months
        # = 0.04387 + 1.02997 = 1.07383 GiB x $0.03 = $0.0322
        "CloudWatch Logs storage": 0.03,
        "CloudWatch alarms": 0.30,  # 1 + 2 alarm metrics x $0.10
        "CloudWatch dashboards": 3.00,
    }
    assert round(result.total, 2) == 26.40


def test_small_stacks_baseline_priced_by_hand_to_the_cent():
    result = report(SMALL_TEMPLATE, "small", SMALL_WORKLOAD, PRICES)
    assert items(result, baseline=True) == {
        "Lambda requests": 0.04,
        # (10,000 + 36,000) GB-s at 1 and 2 GiB become (100,000 x 0.1 + 90,000 x 0.2) x 2.9375
        # = 82,250 GB-s x $0.0000166667 (x86) = $1.3708
        "Lambda duration": 1.37,
        "Provisioned concurrency": 0.00,
        "DynamoDB reads": 0.47,  # 5 RCU x 730 h x $0.00013 = $0.4745
        "DynamoDB writes": 2.37,  # 5 WCU x 730 h x $0.00065 = $2.3725
        "SQS requests": 0.00,
        "CloudWatch Logs ingestion": 0.18,
        "CloudWatch Logs storage": 0.07,  # (0.19073 + 0.17166) GiB x 6 months x $0.03 = $0.0652
        "CloudWatch alarms": 0.00,
        "CloudWatch dashboards": 0.00,
    }
    assert round(result.baseline_total, 2) == 4.50


def test_business_hours_schedule_is_priced_by_the_hours_it_is_on(template_json):
    model = model_from_template(template_json["prod"], "prod")
    processor = next(f for f in model.functions if f.stage == "processor")
    # 2 instances for 12 h on 5 weekdays = 120 of 168 instance-hours a week; off otherwise.
    assert processor.provisioned_average == pytest.approx(2 * 60 / 168)
    assert processor.provisioned_share == pytest.approx(60 / 168)


def test_schedule_walk_wraps_the_week_and_rejects_what_it_cannot_price():
    target = {
        "MinCapacity": 3,
        "ScheduledActions": [
            {
                "ScheduledActionName": "Weekend",
                "Schedule": "cron(0 0 ? * SAT *)",
                "ScalableTargetAction": {"MinCapacity": 1},
            },
            {
                "ScheduledActionName": "Week",
                "Schedule": "cron(0 0 ? * MON *)",
                "ScalableTargetAction": {"MinCapacity": 4},
            },
        ],
    }
    # Sunday and Saturday at 1 (the Saturday action carries over the week's end), Mon-Fri at 4.
    assert provisioned_floor(0, target) == (pytest.approx((2 * 1 + 5 * 4) / 7), 1.0)
    target["ScheduledActions"][0]["Schedule"] = "cron(0 0 1 * ? *)"
    with pytest.raises(CostInputError, match="Weekend: cannot price"):
        provisioned_floor(0, target)


def _prod_like_dev(**changes):
    settings = copy.deepcopy(cdk_context()["pipeline"])
    dev = settings["dev"]
    for path, value in changes.items():
        node = dev
        *parents, leaf = path.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    template = Template.from_stack(synth_app("dev", {"pipeline": settings})).to_json()
    return report(template, "dev", Workload.load(), PRICES)


@pytest.fixture(scope="module")
def dev_report(template_json):
    return report(template_json["dev"], "dev", Workload.load(), PRICES)


def test_more_memory_costs_more_duration(dev_report):
    bigger = _prod_like_dev(**{"functions.enricher.memory_mb": 1536})
    assert items(bigger)["Lambda duration"] > items(dev_report)["Lambda duration"]
    assert bigger.total > dev_report.total


def test_x86_costs_more_than_arm64(dev_report):
    x86 = _prod_like_dev(architecture="x86_64")
    assert items(x86)["Lambda duration"] > items(dev_report)["Lambda duration"]
    assert x86.stack.functions[0].architecture == "x86_64"


def test_provisioned_concurrency_adds_its_allocation(dev_report):
    warm = _prod_like_dev(**{"functions.processor.provisioned_concurrency": 3})
    assert items(dev_report)["Provisioned concurrency"] == 0
    # 3 x 730 h x 3600 s x 0.5 GiB x $0.0000033334 (arm64) = $13.14
    assert items(warm)["Provisioned concurrency"] == 13.14
    assert warm.total > dev_report.total


def test_the_baseline_is_the_naive_stack(dev_report):
    assert {f.memory_mb for f in dev_report.baseline.functions} == {3008}
    assert {f.architecture for f in dev_report.baseline.functions} == {"x86_64"}
    assert dev_report.baseline.table_billing == "PROVISIONED"
    assert {f.log_retention_days for f in dev_report.baseline.functions} == {None}
    # 21 alarms: 19 on one metric each, the two table alarms on two metrics each.
    assert dev_report.stack.alarm_metrics == 19 + 2 * 2 and dev_report.stack.dashboards == 1


def test_cli_prints_terminal_and_markdown_tables(tmp_path, template_json, capsys):
    path = tmp_path / "DataPipeline-prod.template.json"
    path.write_text(json.dumps(template_json["prod"]))
    assert main([str(path)]) == 0
    out = capsys.readouterr().out
    assert "DataPipeline-prod: 1,000,000 records a month" in out
    assert "of the naive baseline" in out
    assert main([str(path), "--markdown"]) == 0
    assert "| line item | this stack | naive baseline |" in capsys.readouterr().out


def test_cli_names_bad_input(tmp_path, capsys):
    assert main([str(tmp_path / "missing.template.json")]) == 1
    assert "run `make synth" in capsys.readouterr().err
    profile = tmp_path / "workload.json"
    profile.write_text(json.dumps({"records_per_month": -1}))
    assert main(["--workload", str(profile), str(tmp_path / "x.json")]) == 1
    assert "records_per_month = -1" in capsys.readouterr().err
    profile.write_text(json.dumps({"recods": 5}))
    assert main(["--workload", str(profile)]) == 1
    assert "unknown keys ['recods']" in capsys.readouterr().err
