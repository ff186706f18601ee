"""The cost chart (``make cost-chart``): prod's bill against the naive stack's, by volume.

A tool of its own, so matplotlib (a development dependency) is imported only to draw it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pipeline_tools.bill.pricing import COST_TARGETS, RECORD_STORAGE, Bill, Report

EVERYTHING_ELSE = "everything else"


def _line(name: str) -> str:
    """``Lambda duration (arm64)`` and ``(x86_64)`` are one line."""
    return name.split(" (")[0]


def _amounts(bill: Bill) -> dict[str, float]:
    amounts: dict[str, float] = {}
    for item in bill.items:
        if item.name != RECORD_STORAGE:
            amounts[_line(item.name)] = amounts.get(_line(item.name), 0.0) + item.usd
    return amounts


def chart(
    results: Sequence[Report],
    path: Path,
    even: int | None = None,
    even_month: int = 1,
    against: Sequence[Bill] = (),
) -> None:
    """One panel per volume, each on its own linear axis: this stack's bill, ``against``'s at
    the same volume if given (another design of it: the per-record path beside the batched
    one), and the naive one's as bars, stacked by line item (the same colour for an item
    everywhere; items under 5 % of every bar together as "everything else"), the ratio and its
    target in the panel's title, break-even (priced in ``even_month``) in the figure's."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if against and len(against) != len(results):
        raise ValueError(f"against: {len(against)} bills for {len(results)} volumes")
    panels = [
        (r, [r.stack, *([against[k]] if against else []), r.baseline])
        for k, r in enumerate(results)
    ]
    names = list(dict.fromkeys(n for _, bills in panels for b in bills for n in _amounts(b)))
    shown = [
        n
        for n in names
        if any(_amounts(b).get(n, 0.0) >= 0.05 * b.compared for _, bills in panels for b in bills)
    ]
    palette = plt.get_cmap("tab20")
    colours = {name: palette(k) for k, name in enumerate([*shown, EVERYTHING_ELSE])}
    figure, axes = plt.subplots(1, len(results), figsize=(13 if against else 12, 5.5), dpi=110)
    labels = ["this stack", *(["per record"] if against else []), "naive stack"]
    for axis, (result, bills) in zip(axes, panels, strict=True):
        _panel(axis, result, bills, labels, shown, colours.__getitem__)
    handles = [plt.Rectangle((0, 0), 1, 1, color=colours[n]) for n in [*shown, EVERYTHING_ELSE]]
    # Top to bottom, as the bands are stacked.
    figure.legend(
        handles[::-1],
        [*shown, EVERYTHING_ELSE][::-1],
        loc="center right",
        fontsize=8,
        frameon=False,
    )
    versus = "the per-record design and the naive stack" if against else "the naive one"
    title = (
        f"{results[0].stack.model.name}: monthly bill in month {results[0].workload.month}, "
        f"this stack against {versus}"
    )
    if even is not None:
        title += f" (break-even: from {even:,} records a month, in month {even_month})"
    figure.suptitle(title, fontsize=11)
    figure.tight_layout(rect=(0, 0, 0.8, 1))
    figure.savefig(path)
    plt.close(figure)


def _panel(
    axis: Any,
    result: Report,
    bills: Sequence[Bill],
    labels: Sequence[str],
    shown: list[str],
    colour: Callable[[str], Any],
) -> None:
    """One volume: the stacked bars, their totals, the target line and the title."""
    for position, bill in enumerate(bills):
        values = _amounts(bill)
        bands = [(n, values.get(n, 0.0)) for n in shown]
        bands.append((EVERYTHING_ELSE, bill.compared - sum(v for _, v in bands)))
        bottom = 0.0
        for name, value in bands:
            axis.bar(position, value, bottom=bottom, color=colour(name), width=0.6)
            bottom += value
        axis.text(position, bottom, f"${bottom:,.0f}", ha="center", va="bottom", fontsize=9)
    volume = result.workload.records_per_month
    target = COST_TARGETS.get(volume)
    goal = ""
    if target is not None:  # the most this stack may cost at this volume
        limit = target * result.baseline.compared
        axis.axhline(limit, color="black", linestyle="--", linewidth=1)
        axis.text(-0.45, limit, " target", va="bottom", fontsize=8)
        goal = "; target: never above" if target >= 1 else f"; target ≤ {target:.0%}"
    axis.set_title(f"{volume:,} records a month\n{result.ratio:.1%} of naive{goal}", fontsize=10)
    axis.set_xticks(list(range(len(labels))), labels, fontsize=8)
    axis.set_ylabel("USD a month (record storage left out)")
    axis.grid(True, axis="y", alpha=0.3)
