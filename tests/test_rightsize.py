"""Right-sizing from the sample REPORT logs of the naive stack (tests/data/*-report.log)."""

from __future__ import annotations

import io
import json
import re

import pytest

from pipeline_tools.rightsize import main, quantile, read, recommend_mb, recommendations
from tests.conftest import ROOT

LOGS = sorted((ROOT / "tests" / "data").glob("*-report.log"))


def used_values(path) -> list[int]:
    """Max Memory Used of every well-formed REPORT line, read independently of the tool."""
    found = re.findall(r"Memory Size: \d+ MB\tMax Memory Used: (\d+) MB", path.read_text())
    return [int(v) for v in found]


@pytest.fixture(scope="module")
def reading():
    streams = [(str(p), p.open()) for p in LOGS]
    try:
        return read(streams)
    finally:
        for _, s in streams:
            s.close()


def test_nearest_rank_quantile():
    values = list(range(1, 101))  # 1..100
    assert quantile(values, 0.99) == 99
    assert quantile(values, 0.5) == 50
    assert quantile(values, 1.0) == 100
    assert quantile([7], 0.99) == 7
    assert quantile([5, 1, 3], 0.34) == 3


@pytest.mark.parametrize(
    ("used", "headroom", "expected"),
    [
        (399, 0.2, 512),  # 478.8 -> 512
        (426, 0.2, 512),  # 511.2 -> 512
        (427, 0.2, 576),  # 512.4 -> 576: the next 64 MB step
        (589, 0.2, 768),  # 706.8 -> 768
        (40, 0.2, 128),  # never below 128
        (9000, 0.2, 10240),  # never above Lambda's maximum
        (100, 0.0, 128),
        (320, 0.0, 320),  # exactly on a step stays
    ],
)
def test_headroom_and_64_mb_rounding(used, headroom, expected):
    assert recommend_mb(used, headroom) == expected


def test_sample_logs_give_the_shipped_defaults(reading):
    recs = {r.stage: r for r in recommendations(reading)}
    assert {s: r.recommended_mb for s, r in recs.items()} == {
        "validator": 512,
        "enricher": 768,
        "processor": 512,
    }
    for path in LOGS:
        stage = path.name.split("-")[0]
        values = used_values(path)
        assert recs[stage].samples == len(values)
        assert (
            recs[stage].quantile_mb
            == quantile(values, 0.99)
            == sorted(values)[-3 if len(values) > 200 else -1]
        )
        assert recs[stage].current_mb == 3008


def test_a_lower_quantile_or_headroom_never_recommends_more(reading):
    p99 = {r.stage: r.recommended_mb for r in recommendations(reading)}
    p50 = {r.stage: r.recommended_mb for r in recommendations(reading, q=0.5, headroom=0.1)}
    assert all(p50[s] <= p99[s] for s in p99)
    assert p50["enricher"] < p99["enricher"]


def test_every_line_is_accounted_for(reading):
    total_lines = sum(len(p.read_text().splitlines()) for p in LOGS)
    samples = sum(len(s.used_mb) for s in reading.functions.values())
    assert reading.lines == total_lines
    assert samples + reading.start_end + reading.other + len(reading.unreadable) == total_lines
    assert sorted((src.split("/")[-1], n) for src, n in reading.unreadable) == [
        ("processor-report.log", 11),
        ("validator-report.log", 51),
    ]


def test_cli_prints_counts_warning_and_the_cdk_json_snippet(capsys):
    assert main([str(p) for p in LOGS]) == 0
    out = capsys.readouterr().out
    assert "500 REPORT samples, 1000 START/END lines, 143 other log lines, 2 unreadable" in out
    assert "unreadable REPORT line: " in out and "processor-report.log:11" in out
    assert "WARNING: DataPipeline-naive-ProcessorFunction5B2A90E2-Ij90Kl12: only 40 samples" in out
    snippet = json.loads(out[out.index('{\n  "functions"') :])
    assert snippet == {
        "functions": {
            "enricher": {"memory_mb": 768},
            "processor": {"memory_mb": 512},
            "validator": {"memory_mb": 512},
        }
    }


def test_cli_reads_stdin_and_names_the_function(capsys):
    line = (
        "REPORT RequestId: abc\tDuration: 5.0 ms\tBilled Duration: 6 ms\t"
        "Memory Size: 1024 MB\tMax Memory Used: 200 MB\n"
    )
    assert (
        main(["-", "--function", "my-orders-fn", "--min-samples", "1"], stdin=io.StringIO(line * 3))
        == 0
    )
    out = capsys.readouterr().out
    assert "my-orders-fn" in out and "256 MB" in out
    assert "not a pipeline stage" in out


def test_cli_fails_clearly_without_report_lines(tmp_path, capsys):
    empty = tmp_path / "app.log"
    empty.write_text("START RequestId: x\nsome log\n")
    assert main([str(empty)]) == 1
    assert "no REPORT lines found in 2 lines" in capsys.readouterr().err
    assert main([str(tmp_path / "missing.log")]) == 1


def test_logs_not_shaped_for_this_stack_get_the_p99_computed_here(tmp_path):
    """REPORT lines drawn from a heavy-tailed distribution (seeded, nothing tuned to land on
    512 or 768 MB): the recommendation is the nearest-rank p99 computed here, plus 20 %,
    rounded up to 64 MB, for each function, whatever the tool's own helpers say."""
    import math
    import random

    rng = random.Random(7)
    lines, used_by_function = [], {}
    for function, base, spread in (("shop-api", 180, 90), ("etl-worker", 900, 400)):
        used = [int(base + rng.paretovariate(2.5) * spread) for _ in range(1000)]
        used_by_function[function] = used
        for n, value in enumerate(used):
            lines.append(
                f"2026-11-20T10:00:{n % 60:02d}.000Z\t/aws/lambda/{function}\tstream\t"
                f"REPORT RequestId: {n:08d}-0000-0000-0000-000000000000\tDuration: 12.34 ms\t"
                f"Billed Duration: 13 ms\tMemory Size: 3008 MB\tMax Memory Used: {value} MB"
            )
    rng.shuffle(lines)
    path = tmp_path / "mixed.log"
    path.write_text("\n".join(lines) + "\n")
    with path.open() as stream:
        recs = {r.function: r for r in recommendations(read([(str(path), stream)]))}
    for function, used in used_by_function.items():
        ordered = sorted(used)
        p99 = ordered[math.ceil(0.99 * len(ordered)) - 1]
        expected = max(128, math.ceil(p99 * 1.2 / 64) * 64)
        assert recs[function].samples == 1000
        assert recs[function].quantile_mb == p99
        assert recs[function].recommended_mb == expected, (function, p99)
    assert {r.recommended_mb for r in recs.values()}.isdisjoint({512, 768})


def test_stdin_without_a_function_name_asks_for_function(capsys):
    """The documented stdin form: lines that name no function get one line asking for it,
    instead of a recommendation for a function called <stdin> and an empty snippet."""
    line = (
        "REPORT RequestId: abc\tDuration: 5.0 ms\tBilled Duration: 6 ms\t"
        "Memory Size: 1024 MB\tMax Memory Used: 200 MB\n"
    )
    assert main(["-", "--min-samples", "1"], stdin=io.StringIO(line * 3)) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    (error,) = captured.err.splitlines()
    assert "--function NAME" in error
