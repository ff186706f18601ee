"""The bill as text or Markdown: one bill, the sweep by volume, the table by age."""

from __future__ import annotations

from collections.abc import Sequence

from pipeline_tools.bill.pricing import (
    BREAK_EVEN_RANGE,
    COUNT_STORAGE,
    RECORD_STORAGE,
    LineItem,
    Report,
)

# --- output ---------------------------------------------------------------------------------


def render(result: Report, markdown: bool = False) -> str:
    w, p = result.workload, result.prices
    title = (
        f"{result.stack.model.name}: {w.records_per_month:,} records a month, month {w.month} "
        f"of the stack's life, {p['region']} list prices of {p['date']}"
    )
    rows = [
        (i.name, i.usd, b.usd, i.detail)
        for i, b in zip(result.stack.items, result.baseline.items, strict=True)
    ]
    summary = (
        f"{result.ratio:.1%} of the naive stack without record storage "
        f"(${result.stack.compared:,.2f} against ${result.baseline.compared:,.2f})"
    )
    if markdown:
        lines = [
            f"**{title}**",
            "",
            "| line item | this stack | naive stack | this stack's basis |",
            "| --- | ---: | ---: | --- |",
        ]
        lines += [f"| {n} | ${a:,.2f} | ${b:,.2f} | {d} |" for n, a, b, d in rows]
        lines += [
            f"| **total** | **${result.stack.total:,.2f}** | **${result.baseline.total:,.2f}** "
            f"| **{summary}** |"
        ]
        return "\n".join(lines)
    width = max(len(n) for n, *_ in rows) + 2
    lines = [title, f"{'line item':<{width}}{'this stack':>12}{'naive':>12}  basis"]
    lines += [f"{n:<{width}}{f'${a:,.2f}':>12}{f'${b:,.2f}':>12}  {d}" for n, a, b, d in rows]
    lines += [
        f"{'total':<{width}}{f'${result.stack.total:,.2f}':>12}"
        f"{f'${result.baseline.total:,.2f}':>12}",
        f"this stack costs {summary}",
    ]
    return "\n".join(lines)


def render_sweep(name: str, results: Sequence[Report], even: int | None, markdown: bool) -> str:
    """The bill by volume, at each age priced."""
    header = f"{name}: the bill by volume and age (record storage left out of both sides)"
    rows = [
        (
            f"{r.workload.records_per_month:,}",
            f"{r.workload.month}",
            f"${r.stack.compared:,.2f}",
            f"${r.baseline.compared:,.2f}",
            f"{r.ratio:.1%}",
        )
        for r in results
    ]
    if even is None:
        verdict = "break-even: none up to 1,000,000,000 records a month"
    elif even <= BREAK_EVEN_RANGE[0]:
        verdict = f"break-even: none needed, this stack is the cheaper one from {even:,} records"
    else:
        verdict = f"break-even: from {even:,} records a month this stack is the cheaper one"
    verdict += f" (month {results[0].workload.month})" if results else ""
    if markdown:
        lines = [
            f"**{header}**",
            "",
            "| records a month | month | this stack | naive stack | ratio |",
            "| ---: | ---: | ---: | ---: | ---: |",
        ]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join([*lines, "", verdict])
    lines = [header, f"{'records':>15}{'month':>7}{'this stack':>14}{'naive':>14}{'ratio':>9}"]
    lines += [f"{a:>15}{m:>7}{b:>14}{c:>14}{d:>9}" for a, m, b, c, d in rows]
    return "\n".join([*lines, verdict])


#: Why a line of this stack's bill changes with the stack's age, for the lines that can.
GROWS_BECAUSE = {
    RECORD_STORAGE: "the records kept: up to their retention, or all without one",
    COUNT_STORAGE: "markers fill their 9 days; then a total item a day and type",
    "DynamoDB point-in-time recovery": "follows the table's size",
    "CloudWatch Logs storage": "logs kept up to their retention, or for ever without one",
}


def by_age(results: Sequence[Report]) -> dict[str, str]:
    """How each line of this stack's bill that changes with age changes: ``grows`` when it is
    still dearer at the last age than at the one before, ``fills`` when it rose only before."""

    def risen(a: LineItem, b: LineItem) -> bool:
        return b.usd - a.usd > 0.005

    first, before, last = (r.stack.items for r in (results[0], results[-2], results[-1]))
    changes = {}
    for a, b, c in zip(first, before, last, strict=True):
        if risen(b, c):
            changes[a.name] = "grows"
        elif risen(a, c):
            changes[a.name] = "fills, then flat"
    return changes


def render_ages(name: str, results: Sequence[Report], markdown: bool) -> str:
    """This stack's bill line by line at each age priced, what grows and why, and the naive
    stack's for comparison."""
    months = [r.workload.month for r in results]
    header = (
        f"{name}: the bill by the stack's age, {results[0].workload.records_per_month:,} "
        "records a month"
    )
    changes = by_age(results) if len(results) > 1 else {}
    rows = [
        (
            item.name,
            [f"${r.stack.items[i].usd:,.2f}" for r in results],
            f"{changes[item.name]}: {GROWS_BECAUSE.get(item.name, 'see its basis')}"
            if item.name in changes
            else "",
        )
        for i, item in enumerate(results[0].stack.items)
    ]
    rows += [
        ("total, record storage aside", [f"${r.stack.compared:,.2f}" for r in results], ""),
        (
            "naive stack, record storage aside",
            [f"${r.baseline.compared:,.2f}" for r in results],
            "",
        ),
        ("ratio", [f"{r.ratio:.1%}" for r in results], ""),
    ]
    if markdown:
        lines = [
            f"**{header}**",
            "",
            "| line item | " + " | ".join(f"month {m}" for m in months) + " | with age |",
            "| --- | " + " | ".join("---:" for _ in months) + " | --- |",
        ]
        lines += [f"| {n} | " + " | ".join(v) + f" | {g} |" for n, v, g in rows]
        return "\n".join(lines)
    width = max(len(n) for n, *_ in rows) + 2
    lines = [header, f"{'line item':<{width}}" + "".join(f"{f'month {m}':>12}" for m in months)]
    lines += [f"{n:<{width}}" + "".join(f"{x:>12}" for x in v) + f"  {g}" for n, v, g in rows]
    return "\n".join(lines)
