"""The cost report: a template and workload priced by hand to the cent, line by line; the
naive table sized for the load; provisioned concurrency and X-Ray at load; the CLI.

Every expected figure below is worked out in the comment beside it from the price file's list
prices, never read back from the report.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace

import pytest

from pipeline_tools.bill.model import capacity_of, model_from_template
from pipeline_tools.bill.pricing import (
    COUNT_STORAGE,
    LineItem,
    load_prices,
    traces_recorded,
)
from pipeline_tools.bill.report import report
from pipeline_tools.bill.usage import CodeUsage
from pipeline_tools.bill.workload import SECONDS_PER_MONTH, CostInputError, Workload
from pipeline_tools.cost import main
from tests.conftest import docs_text

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
                "TracingConfig": {"Mode": "Active"},
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
                "TracingConfig": {"Mode": "PassThrough"},
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
        "T": {
            "Type": "AWS::DynamoDB::Table",
            "Properties": {
                "BillingMode": "PAY_PER_REQUEST",
                "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
            },
        },
        "Q": {"Type": "AWS::SQS::Queue", "Properties": {}},
        "Alarm1": {"Type": "AWS::CloudWatch::Alarm", "Properties": {"MetricName": "Errors"}},
        "Alarm2": {
            "Type": "AWS::CloudWatch::Alarm",
            "Properties": {
                "Metrics": [
                    {"Id": "e", "Expression": "a + b"},
                    {"Id": "a", "MetricStat": {"Period": 60}},
                    {"Id": "b", "MetricStat": {"Period": 60}},
                ]
            },
        },
        "Alarm3": {
            "Type": "AWS::CloudWatch::Alarm",
            "Properties": {"MetricName": "Throttles", "Period": 10},
        },
        "Composite": {"Type": "AWS::CloudWatch::CompositeAlarm", "Properties": {}},
        "D": {"Type": "AWS::CloudWatch::Dashboard", "Properties": {}},
    }
}
SMALL_WORKLOAD = Workload(
    records_per_month=100_000,
    duration_ms={"validator": 100, "processor": 200},
    record_bytes=1900,
    months=(6,),
    failed_record_ratio=0.1,
)
#: What the meter would report for the small stack's code (chosen, not measured, here).
SMALL_USAGE = CodeUsage(
    write_units=3,
    read_units=0.5,
    log_bytes={"validator": 500, "processor": 1000},
    failed_log_bytes=800,
    item_bytes=924,  # + 100 bytes of DynamoDB's per-item overhead = 1,024 bytes stored
    items_expire=False,
    custom_metrics=2,
    marker_items=1,
    marker_item_bytes=28,  # + 100 bytes of overhead = 128 bytes stored, never expiring
)
NAIVE_USAGE = CodeUsage(
    write_units=3,
    read_units=0.5,
    log_bytes={"validator": 300, "processor": 300},
    failed_log_bytes=300,
    item_bytes=924,
    items_expire=False,
    custom_metrics=2,
)


def items(bill):
    return {i.name.split(" (")[0]: round(i.usd, 2) for i in bill.items}


def small_report(workload=SMALL_WORKLOAD):
    return report(SMALL_TEMPLATE, "small", workload, PRICES, SMALL_USAGE, NAIVE_USAGE)


def test_small_stack_priced_by_hand_to_the_cent():
    result = small_report()
    # 100,000 validator + 90,000 processor invocations (10 % fail validation).
    assert items(result.stack) == {
        "Lambda requests": 0.04,  # 190,000 / 1e6 x $0.20 = $0.038
        # validator: 100,000 x 0.1 s x 1 GB = 10,000 GB-s x $0.0000133334 (arm64) = $0.1333
        # processor: 90,000 x 0.2 s x 2 GB = 36,000 GB-s, all under provisioned concurrency,
        # x $0.0000097222 (x86 provisioned duration) = $0.3500; total $0.4833
        "Lambda duration": 0.48,
        # 1 instance x 730 h x 3600 s x 2 GB = 5,256,000 GB-s x $0.0000041667 = $21.9002
        "Provisioned concurrency": 21.90,
        # validator Active at 0.038 invocations a second, under the 1/s reservoir: every one
        # is traced, 100,000 x $5 / 1e6 = $0.50 (the processor passes through: none)
        "X-Ray traces": 0.50,
        "DynamoDB reads": 0.01,  # 90,000 x 0.5 RRU = 45,000 x $0.125/M = $0.0056
        "DynamoDB writes": 0.17,  # 90,000 x 3 WRU = 270,000 x $0.625/M = $0.16875
        # 90,000 items x 6 months x 1,024 B = 0.514984 GB x $0.25 = $0.1287
        "DynamoDB storage": 0.13,
        # 90,000 markers x 6 months x 128 B = 0.064373 GB, never expiring; and 6 x 30.4375
        # days x 10 types = 1,826.25 day totals x 160 B = 0.000272 GB; 0.064645 GB x $0.25
        "DynamoDB count storage": 0.02,
        # records and counts: 0.579629 GB x $0.20 = $0.1159
        "DynamoDB point-in-time recovery": 0.12,
        "Count roll-up": 0.00,  # none in this template
        "SQS requests": 0.01,  # 10,000 failures x 3 = 30,000 x $0.40/M = $0.012
        # validator 100,000 x 500 + 10,000 failed x 800 = 58,000,000 B; processor 90,000 x
        # 1,000 = 90,000,000 B; 148,000,000 B = 0.137835 GB x $0.50 = $0.0689
        "CloudWatch Logs ingestion": 0.07,
        # validator 0.054017 GB x (7 / 30.4375) months + processor 0.083819 GB x 6 months
        # = 0.012423 + 0.502914 = 0.515337 GB x $0.03 = $0.0155
        "CloudWatch Logs storage": 0.02,
        "CloudWatch custom metrics": 0.60,  # 2 x $0.30
        # 1 + 2 standard alarm metrics x $0.10, 1 high-resolution (10 s) x $0.30, 1 composite
        # x $0.50 = $0.30 + $0.30 + $0.50
        "CloudWatch alarms": 1.10,
        "CloudWatch dashboards": 3.00,
    }
    # The counts (+$0.016161) and their recovery (+$0.012929) on the previous $28.124004.
    assert round(result.stack.total, 2) == 28.15
    assert result.stack.compared == pytest.approx(28.153094 - 0.128746, abs=1e-5)


def test_small_stacks_naive_baseline_priced_by_hand_to_the_cent():
    result = small_report()
    assert items(result.baseline) == {
        "Lambda requests": 0.04,
        # (100,000 x 0.1 + 90,000 x 0.2) s x 2.9375 GB = 82,250 GB-s x $0.0000166667 (x86)
        "Lambda duration": 1.37,
        "Provisioned concurrency": 0.00,
        "X-Ray traces": 0.00,
        "DynamoDB reads": 0.47,  # 45,000 RCU-s a month is far below 5 RCU: 5 x 730 h x $0.00013
        "DynamoDB writes": 2.37,  # likewise the 5 WCU floor: 5 x 730 h x $0.00065 = $2.3725
        "DynamoDB storage": 0.13,  # the same records, never expiring: 0.514984 GB x $0.25
        "DynamoDB count storage": 0.00,  # 1,826.25 day totals: 0.000272 GB x $0.25 = $0.00007
        "DynamoDB point-in-time recovery": 0.00,
        "Count roll-up": 0.00,
        "SQS requests": 0.00,
        # (100,000 + 10,000) x 300 + 90,000 x 300 = 60,000,000 B = 0.055879 GB x $0.50
        "CloudWatch Logs ingestion": 0.03,
        "CloudWatch Logs storage": 0.01,  # 0.055879 GB x 6 months x $0.03 = $0.0101
        "CloudWatch custom metrics": 0.00,
        "CloudWatch alarms": 0.00,
        "CloudWatch dashboards": 0.00,
    }
    assert round(result.baseline.total, 2) == 4.42
    # The comparison leaves record storage out of both sides: 28.024348 / 4.293899.
    assert result.ratio == pytest.approx(28.024348 / 4.293899, rel=1e-5)


#: The small stack with a count roll-up: a 256 MB arm64 function labelled ``count-rollup``,
#: invoked through its alias every hour, keeping its logs 7 days.
ROLLUP_TEMPLATE = {
    "Resources": {
        **SMALL_TEMPLATE["Resources"],
        "Rollup": {
            "Type": "AWS::Lambda::Function",
            "Metadata": {"pipeline:support": "count-rollup"},
            "Properties": {
                "MemorySize": 256,
                "Architectures": ["arm64"],
                "LoggingConfig": {"LogGroup": {"Ref": "RollupLogs"}},
            },
        },
        "RollupLogs": {"Type": "AWS::Logs::LogGroup", "Properties": {"RetentionInDays": 7}},
        "RollupAlias": {
            "Type": "AWS::Lambda::Alias",
            "Properties": {"FunctionName": {"Ref": "Rollup"}, "Name": "live"},
        },
        "RollupSchedule": {
            "Type": "AWS::Events::Rule",
            "Properties": {
                "ScheduleExpression": "rate(1 hour)",
                "Targets": [{"Arn": {"Ref": "RollupAlias"}, "Id": "Target0"}],
            },
        },
    }
}


def test_expiring_markers_and_their_roll_up_priced_by_hand():
    usage = replace(SMALL_USAGE, markers_expire=True)
    result = report(ROLLUP_TEMPLATE, "small", SMALL_WORKLOAD, PRICES, usage, NAIVE_USAGE)
    lines = {i.name: i.usd for i in result.stack.items}
    # Markers kept 7 days and TTL's 2-day deletion delay: 90,000 x 9 / 30.4375 = 26,611.9
    # markers x 128 B = 0.0031724 GB, and the 0.00027213 GB of day totals; x $0.25.
    assert lines["DynamoDB count storage"] == pytest.approx(0.0034445 * 0.25, rel=1e-4)
    # 730.5 runs (30.4375 days x 24). Each hour's 123.203 markers: 16 Query pages of 1 RRU
    # (123.203 / 16 x 128 B is under 4 KB), their records by BatchGetItem at 1 RRU each (1,024
    # B rounds up to 4 KB), the watermark's GetItem: 140.203 RRU; 10 totals and the watermark:
    # 11 WRU; 1 + 16 + 2 batches + 11 = 30 requests x 10 ms + 200 ms = 0.5 s.
    # Requests 730.5 x $0.20/M = $0.0001461; duration 730.5 x 0.5 s x 0.25 GB x $0.0000133334
    # = $0.0012175; reads 102,418 RRU x $0.125/M = $0.0128023; writes 8,035.5 WRU x $0.625/M
    # = $0.0050222; logs 730.5 x 1,200 B = 0.00081639 GB x ($0.50 + 7 / 30.4375 x $0.03)
    # = $0.0004138.
    assert lines["Count roll-up"] == pytest.approx(0.0196019, rel=1e-4)
    assert {i.name: i.usd for i in result.baseline.items}["Count roll-up"] == 0


def test_the_naive_table_is_sized_to_carry_the_load():
    result = small_report(SMALL_WORKLOAD.at(100_000_000))
    baseline = items(result.baseline)
    # 90 M valid records x 3 WRU = 270 M units a month = 102.669 a second; at 70 %
    # utilisation 146.67 -> 147 WCU x 730 h x $0.00065 = $69.7515
    assert baseline["DynamoDB writes"] == 69.75
    # 90 M x 0.5 RRU = 45 M a month = 17.111 a second / 0.7 = 24.44 -> 25 RCU x 730 x $0.00013
    assert baseline["DynamoDB reads"] == 2.37


def test_xray_sampling_is_one_a_second_then_five_percent():
    # 10 invocations a second: 1 + 0.05 x 9 = 1.45 traces a second.
    assert traces_recorded(10 * SECONDS_PER_MONTH, PRICES) == pytest.approx(
        1.45 * SECONDS_PER_MONTH
    )
    assert traces_recorded(0.5 * SECONDS_PER_MONTH, PRICES) == pytest.approx(
        0.5 * SECONDS_PER_MONTH
    )


def test_scheduled_provisioned_concurrency_is_priced_at_its_floor_and_at_load(template_json):
    model = model_from_template(template_json["prod"], "prod")
    processor = next(f for f in model.functions if f.stage == "processor")
    # Business hours (12 h on 5 weekdays = 60 of 168 hours a week): min 2, max 10, tracking
    # 70 % utilization; off hours: 0. Little load: the floor of 2.
    assert processor.capacity.instances(0.1) == pytest.approx((2 * 60 / 168, 60 / 168))
    # 3.0 concurrent executions need ceil(3.0 / 0.7) = 5 instances in business hours.
    assert processor.capacity.instances(3.0) == pytest.approx((5 * 60 / 168, 60 / 168))
    # 50 would need 72: held at the maximum of 10.
    assert processor.capacity.instances(50)[0] == pytest.approx(10 * 60 / 168)


def test_schedule_walk_wraps_the_week_and_rejects_what_it_cannot_price():
    target = {
        "MinCapacity": 3,
        "MaxCapacity": 8,
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
    assert capacity_of(0, target).instances(0) == (pytest.approx((2 * 1 + 5 * 4) / 7), 1.0)
    target["ScheduledActions"][0]["Schedule"] = "cron(0 0 1 * ? *)"
    with pytest.raises(CostInputError, match="Weekend: cannot price"):
        capacity_of(0, target)


def test_prod_meets_its_cost_targets_at_every_age(prod_cost):
    """The issues' targets at 100 ms a single-record invocation, record storage out of both
    sides: at most 80 % of the naive stack at 1 M records a month, and, on the batched path,
    15 % at 10 M and 12 % at 100 M; never above it from 1 M up; in the stack's 1st, 12th and
    36th month alike."""
    by_volume = {(r.workload.records_per_month, r.workload.month): r for r in prod_cost}
    assert {m for _, m in by_volume} == {1, 12, 36}
    for month in (1, 12, 36):
        assert by_volume[(1_000_000, month)].ratio <= 0.80
        assert by_volume[(10_000_000, month)].ratio <= 0.15
        assert by_volume[(100_000_000, month)].ratio <= 0.12
    assert all(r.ratio < 1 for r in prod_cost)


def test_prods_bill_does_not_grow_with_the_stacks_age(prod_cost):
    """At 10 M records a month, month 36 within 2 % of month 12, record storage aside: nothing
    the counts keep grows with the records ever stored (a total per day and type does grow,
    by a few MB in three years)."""
    by_volume = {(r.workload.records_per_month, r.workload.month): r for r in prod_cost}
    for volume in (1_000_000, 10_000_000, 100_000_000):
        twelve, thirty_six = by_volume[(volume, 12)].stack, by_volume[(volume, 36)].stack
        assert thirty_six.compared <= twelve.compared * 1.02
    counts = {
        m: next(i.usd for i in by_volume[(10_000_000, m)].stack.items if i.name == COUNT_STORAGE)
        for m in (1, 12, 36)
    }
    assert counts[36] - counts[12] < 0.01 and counts[12] - counts[1] < 0.01


@pytest.fixture(scope="module")
def prod_usage(stacks):
    """prod's template and its code metered once for the module: (name, template, usage, naive)."""
    from pipeline_tools.bill.usage import measure
    from tests.conftest import assembly_of

    directory, name, template = assembly_of(stacks["prod"])
    return (name, template, *measure(directory, name, template, Workload.load()))


@pytest.fixture(scope="module")
def prod_cost(prod_usage):
    name, template, usage, naive = prod_usage
    volumes = [1_000_000, 3_000_000, 10_000_000, 30_000_000, 100_000_000]
    workload = Workload.load()
    return [
        report(template, name, workload.at(v, m), PRICES, usage, naive)
        for v in volumes
        for m in workload.months
    ]


def test_prod_measured_usage_is_what_the_settings_promise(prod_usage):
    _, _, usage, naive = prod_usage
    # INFO application and WARN system levels: a valid record writes no log line at all.
    assert usage.log_bytes == {"validator": 0, "enricher": 0, "processor": 0}
    # The same code in the text format: START, END and REPORT for every invocation.
    assert all(b > 150 for b in naive.log_bytes.values())
    # Two puts of a unit each: the deflated record item (under 1 KB) and its count marker.
    assert usage.write_units == 2 and usage.item_bytes < 1024
    assert usage.items_expire and usage.markers_expire
    # One marker per record, of keys and its expiry: "pk" + "MARKER#<hour>#<shard>" (23
    # characters), "sk" + "<day>#<type>#<id>#<stored_at>" (10 + 27 characters and 3 #, the
    # sample's types and ids under 40 characters together), "expires_at" + a number of 10
    # digits (at most 21 bytes, DynamoDB's size rule).
    assert usage.marker_items == 1
    assert usage.marker_item_bytes < 2 + 23 + 2 + (10 + 27 + 3 + 40) + 10 + 21


def test_cli_prints_terminal_and_markdown_tables(stacks, capsys, monkeypatch):
    from tests.conftest import assembly_of

    directory, name, _ = assembly_of(stacks["prod"])
    path = directory / f"{name}.template.json"
    assert main([str(path), "--sweep"]) == 0
    captured = capsys.readouterr()
    assert f"{name}: 1,000,000 records a month" in captured.out
    assert "of the naive stack without record storage" in captured.out
    assert "break-even: from" in captured.out
    assert "metering" not in captured.out
    # one progress line a stack: its two meter runs (as deployed, as the naive stack) are one
    assert captured.err.count(f"metering {name}") == 1, captured.err
    monkeypatch.setenv("MARKDOWN", "1")
    assert main([str(path), "--records-per-month", "10000000"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"**{name}: 10,000,000 records a month")
    assert "| line item | this stack | naive stack |" in out
    assert all(line.startswith(("|", "**")) or not line for line in out.splitlines())


def test_cli_names_bad_input(tmp_path, capsys):
    assert main([str(tmp_path / "missing.template.json")]) == 1
    assert "missing.template.json" in capsys.readouterr().err
    profile = tmp_path / "workload.json"
    profile.write_text(json.dumps({"records_per_month": -1}))
    assert main(["--workload", str(profile), str(tmp_path / "x.json")]) == 1
    assert "records_per_month = -1" in capsys.readouterr().err
    profile.write_text(json.dumps({"recods": 5}))
    assert main(["--workload", str(profile)]) == 1
    assert "unknown keys ['recods']" in capsys.readouterr().err
    profile.write_text(json.dumps({"log_months": 5}))
    assert main(["--workload", str(profile)]) == 1
    assert "log_months renamed to months" in capsys.readouterr().err
    assert main(["--records-per-month", "0"]) == 1
    assert "--records-per-month = 0" in capsys.readouterr().err


def test_cli_draws_the_chart(stacks, per_record_prod, tmp_path, monkeypatch):
    """make cost-chart's command: prod's bill beside the per-record design's (--against) and
    the naive stack's, one panel a volume, three bars each."""
    from pipeline_tools.bill import chart as chart_module
    from tests.conftest import assembly_of

    directory, name, _ = assembly_of(stacks["prod"])
    twin_directory, twin_name, _ = assembly_of(per_record_prod)
    drawn = []
    draw = chart_module.chart

    def spy(results, path, even=None, even_month=1, against=()):
        drawn.append(([r.stack.compared for r in results], [b.compared for b in against]))
        return draw(results, path, even, even_month, against)

    monkeypatch.setattr(chart_module, "chart", spy)
    chart = tmp_path / "cost.png"
    twin = str(twin_directory / f"{twin_name}.template.json")
    template = str(directory / f"{name}.template.json")
    assert main([template, "--chart", str(chart), "--against", twin]) == 0
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and chart.stat().st_size > 10_000
    ((batched, per_record),) = drawn
    # At each volume charted the batched bill is below the per-record one (docs/batching.md).
    assert len(batched) == len(per_record) == 3
    assert all(b < p for b, p in zip(batched, per_record, strict=True))
    assert main([template, "--chart", str(chart)]) == 0  # without --against: two bars


def test_every_lever_saves_money_in_prod(per_record_prod, capsys):
    """Undoing any lever in prod's per-record template raises the bill, at 1 M and at 10 M
    (``make synth-all`` writes it to cdk.out/per-record, the levers' default)."""
    from pipeline_tools.cost_levers import LEVERS, VOLUMES, render, savings
    from pipeline_tools.cost_levers import main as levers_main
    from tests.conftest import assembly_of

    directory, name, template = assembly_of(per_record_prod)
    capsys.readouterr()
    found = savings(directory, name, template, Workload.load(), PRICES)
    progress = capsys.readouterr()
    # progress once, on stderr, for all the metering runs: nothing on stdout
    assert progress.out == "" and len(progress.err.splitlines()) == 1, progress.err
    assert [s.lever for s in found] == list(LEVERS)
    for saving in found:
        assert all(saving.usd[v] > 0.5 for v in VOLUMES), (saving.lever.name, saving.usd)
    # Active tracing on three stages at 1 M: 2,980,000 invocations, all under the 1/s
    # reservoir, x $5 / 1e6 = $14.90.
    (tracing,) = [s for s in found if s.lever.name.startswith("Tracing")]
    assert round(tracing.usd[1_000_000], 2) == 14.90
    assert "| Tracing only where it pays |" in render(found, markdown=True)
    # The cost page's table of levers is this run's (`python -m pipeline_tools.cost_levers`).
    table = render(found, markdown=True).strip().splitlines()
    readme = docs_text("cost")
    written = readme[readme.index(table[0]) :].splitlines()[: len(table)]
    assert all(_same_figures(a, b) for a, b in zip(table, written, strict=True)), written
    assert levers_main([str(directory / "missing.template.json")]) == 1
    assert "missing.template.json" in capsys.readouterr().err


def test_the_readme_bills_are_a_fresh_run_of_the_cost_report(prod_usage, stacks):
    """Every bill table on the cost page is what `make cost` prints now (MARKDOWN=1), for prod
    at 1 M, 10 M and 100 M records in its 36th month, its bill by age at 10 M (months 1, 12 and
    36) and its sweep at each age, and for dev at 1 M and 10 M: no hand-typed figure.
    Regenerate them with `MARKDOWN=1 python -m pipeline_tools.cost ...`."""
    from pipeline_tools.bill.pricing import SWEEP, break_even
    from pipeline_tools.bill.render import render, render_ages, render_sweep
    from pipeline_tools.bill.usage import measure
    from tests.conftest import assembly_of

    readme = docs_text("cost")
    workload = Workload.load()
    assert workload.months == (1, 12, 36) and workload.month == 36
    name, template, usage, naive = prod_usage
    dev_dir, dev_name, dev_template = assembly_of(stacks["dev"])
    dev_usage, dev_naive = measure(dev_dir, dev_name, dev_template, workload)

    def bill(volume, month=None, t=template, n=name, u=usage, b=naive):
        return report(t, n, workload.at(volume, month), PRICES, u, b)

    tables = [render(bill(v), markdown=True) for v in (1_000_000, 10_000_000, 100_000_000)]
    tables += [
        render(report(dev_template, dev_name, workload.at(v), PRICES, dev_usage, dev_naive), True)
        for v in (1_000_000, 10_000_000)
    ]
    tables.append(render_ages(name, [bill(10_000_000, m) for m in workload.months], True))
    tables.append(
        render_sweep(
            name,
            [bill(v, m) for v in SWEEP for m in workload.months],
            break_even(lambda v: bill(v, 1)),
            True,
        )
    )
    # The bill by age is on the records page too, under "Counts at scale".
    pages = [(readme, t) for t in tables] + [(docs_text("records-and-operations"), tables[5])]
    for page, table in pages:
        header = table.splitlines()[0]
        assert header in page, header
        written = page[page.index(header) :].splitlines()[: len(table.strip().splitlines())]
        differing = [
            (now, then)
            for now, then in zip(table.strip().splitlines(), written, strict=True)
            if not _same_figures(now, then)
        ]
        assert differing == [], (header, differing)


def _same_figures(now: str, then: str) -> bool:
    """The same line, each figure equal within one unit of its last printed digit or 0.1 %,
    whichever is larger: a run's items vary by a fraction of a byte (a TTL number ending in 0
    is a byte smaller to DynamoDB; a timestamp's trailing zeros), and at 10 M records a month
    that moves a storage line by a few cents."""
    number = r"[0-9][0-9,]*(?:\.[0-9]+)?"
    if re.sub(number, "#", now) != re.sub(number, "#", then):
        return False
    for a, b in zip(re.findall(number, now), re.findall(number, then), strict=True):
        decimals = len(a.split(".")[1]) if "." in a else 0
        x, y = float(a.replace(",", "")), float(b.replace(",", ""))
        if abs(x - y) > max(1.01 * 10**-decimals, 0.001 * abs(y)):
            return False
    return True


def test_the_readme_prose_figures_are_the_fresh_bills_arithmetic(prod_cost):
    """The figures the cost page quotes beside the bills, from prod's bills at 1 M and 10 M in
    the 36th month: the counts with their recovery (storage x (1 + $0.20 / $0.25)) and their
    roll-up, the writes the transaction doubled, the records' recovery (their storage x $0.20 /
    $0.25), the counts' share of the recovery, a month's more records kept for ever, and the
    six rollback alarms ($0.10 each)."""
    readme = " ".join(docs_text().split())
    by_volume = {r.workload.records_per_month: r for r in prod_cost if r.workload.month == 36}

    def line(volume: int, name: str) -> LineItem:
        return next(i for i in by_volume[volume].stack.items if i.name.startswith(name))

    ratio = PRICES["dynamodb"]["pitr_gb_month"] / PRICES["dynamodb"]["storage_gb_month"]
    counts = {
        v: line(v, COUNT_STORAGE).usd * (1 + ratio) + line(v, "Count roll-up").usd
        for v in by_volume
    }
    assert (
        f"${counts[1_000_000]:.2f} at 1 M and ${counts[10_000_000]:.2f} at 10 M a month" in readme
    )
    # A transaction of the record and its counter would bill each of its 2 items twice: 2 more
    # write units a valid record (1 % of the records are invalid).
    price = PRICES["dynamodb"]["on_demand_write_request_per_million"] / 1e6
    doubled = {v: v * 0.99 * 2 * price for v in by_volume}
    assert (
        f"would add ${doubled[1_000_000]:.2f} and ${doubled[10_000_000]:.2f} a month in doubled"
        in readme
    )
    records = {v: line(v, "DynamoDB storage").usd * ratio for v in by_volume}
    assert (
        f"recovery of the records, ${records[1_000_000]:.2f} at 1 M and "
        f"${records[10_000_000]:.2f} at 10 M" in readme
    )
    # The recovery line's basis: "14.43 GB: records 13.88, counts 0.55".
    pitr = line(10_000_000, "DynamoDB point-in-time recovery")
    table_gb, records_gb, counts_gb = map(float, re.findall(r"[0-9.]+", pitr.detail)[:3])
    assert (
        f"the counts are {counts_gb / table_gb * 100:.0f} % of what it protects at 10 M records "
        "a month "
        f"({counts_gb:.2f} GB of {table_gb:.2f} GB), ${counts_gb * 0.20:.2f} of its "
        f"${pitr.usd:.2f}" in readme
    )
    # A month of records kept for ever: the 60 days' storage over 60 / 30.4375 months.
    month_gb = records_gb / (60 / (365.25 / 12))
    assert (
        f"records of 764 bytes are {month_gb:.2f} GB, ${month_gb * 0.25:.2f} of storage and "
        f"${month_gb * 0.20:.2f} of recovery more each month" in readme
    )
    assert "the 6 rollback alarms on each new version, $0.60" in readme


def test_records_kept_for_ever_cost_their_storage_and_the_counts_cost_the_same(prod_usage):
    """With ``record_retention_days`` unset the records never expire: their storage and its
    recovery grow with the stack's age, the counts' lines do not (the markers expire whatever
    the records do)."""
    import copy

    name, template, usage, naive = prod_usage
    kept = copy.deepcopy(template)
    for resource in kept["Resources"].values():
        variables = resource.get("Properties", {}).get("Environment", {}).get("Variables", {})
        variables.pop("RECORD_RETENTION_DAYS", None)
    workload = Workload.load()

    def lines(t, month):
        bill = report(t, name, workload.at(10_000_000, month), PRICES, usage, naive).stack
        return {i.name: i.usd for i in bill.items}

    for month in (12, 36):
        retained, for_ever = lines(template, month), lines(kept, month)
        assert for_ever[COUNT_STORAGE] == retained[COUNT_STORAGE]
        assert for_ever["Count roll-up"] == retained["Count roll-up"]
    # Kept for ever: 36 months of records against 12, three times the storage.
    assert lines(kept, 36)["DynamoDB storage"] == pytest.approx(
        3 * lines(kept, 12)["DynamoDB storage"]
    )
    assert lines(template, 36)["DynamoDB storage"] == lines(template, 12)["DynamoDB storage"]


def test_the_cost_page_documents_every_workload_key_with_its_default():
    import json as json_module

    from pipeline_tools.bill.workload import WORKLOAD_FILE

    page = docs_text("cost")
    table = page[page.index("### The workload file") :].split("\n\n")[2]
    rows = {
        row.split(" | ")[0].strip("| `"): row.split(" | ")[2].strip("`")
        for row in table.splitlines()[2:]
    }
    defaults = json_module.loads(WORKLOAD_FILE.read_text())
    assert set(rows) == set(defaults)
    assert {k: json_module.loads(v) for k, v in rows.items()} == defaults


def test_a_partial_workload_file_says_which_defaults_it_took(tmp_path):
    said: list[str] = []
    path = tmp_path / "my.json"
    path.write_text('{"records_per_month": 5000, "duration_ms": {"enricher": 250}}')
    workload = Workload.load(path, say=said.append)
    assert workload.records_per_month == 5000
    # the stages it leaves out keep their defaults; its own stage is its own
    assert dict(workload.duration_ms) == {"validator": 100, "enricher": 250, "processor": 100}
    (line,) = said
    for default in (
        "record_bytes = 1024",
        "months = [1, 12, 36]",
        "duration_ms.validator = 100",
        "duration_ms.processor = 100",
        "failed_record_ratio = 0.01",
    ):
        assert default in line, line
    assert "records_per_month" not in line and "duration_ms.enricher" not in line
    full = tmp_path / "full.json"
    from pipeline_tools.bill.workload import WORKLOAD_FILE

    full.write_text(WORKLOAD_FILE.read_text())
    quiet: list[str] = []
    Workload.load(full, say=quiet.append)
    assert quiet == []  # a complete file takes no default, and nothing is said
