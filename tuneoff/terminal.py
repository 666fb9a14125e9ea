"""What the terminal shows: a data file's validation, and a comparison (the 80-column summary, or
every dimension with `--full`). The commands in `cli.py` call these; the report files carry the rest.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from .compare import Comparison
    from .compare.diff import ExperimentDiff
    from .config.prices import PriceTable
    from .data import Summary, Validation


def print_validation(found: Validation, out: Console, show: int | None = 20) -> int:
    """Print a `Validation`: problems (at most `show` per kind), summary, verdict; the exit code."""
    from collections import Counter

    from .errors import Kind

    printed: Counter[str] = Counter()
    lines = []
    for p in found.problems:
        printed[p.kind] += 1
        if show is None or printed[p.kind] <= show:
            lines.append(p.render())
    for kind, count in printed.items():
        if show is not None and count > show:
            lines.append(f"... and {count - show} more {kind} ({Kind[kind].help})")
    if lines:  # one print: rich is slow per call, and markup off so `[field]` stays literal
        out.print("\n".join(lines), markup=False, highlight=False, soft_wrap=True)
    out.print(_summary_table(found.summary))
    errors = len(found.errors)
    verdict = f"{errors} error(s), {len(found.problems) - errors} warning(s)"
    out.print(f"[red]{verdict}[/red]" if errors else f"[green]ok[/green]: {verdict}")
    return 1 if errors else 0


def _summary_table(summary: Summary) -> Table:
    table = Table(title="Summary", show_header=False)
    table.add_row("examples", str(summary.examples))
    if summary.chats:
        table.add_row("chats with context", str(summary.chats))
    for name, stats in (("length", summary.lengths), ("target length", summary.target_lengths)):
        if stats is not None:
            table.add_row(f"{name} ({summary.unit})", f"min {stats.min}  mean {stats.mean:.1f}  p50 {stats.p50}"
                                                      f"  p95 {stats.p95}  max {stats.max}")
    table.add_row("distinct targets", str(summary.distinct_targets))
    if summary.labels:
        top = ", ".join(f"{label} {count}" for label, count in summary.labels[:10])
        more = f", ... ({len(summary.labels) - 10} more)" if len(summary.labels) > 10 else ""
        table.add_row("labels", top + more)
    return table


def print_comparison(comparison: Comparison, prices: PriceTable, out: Console, full: bool = False) -> None:
    """The end of `run`/`demo`/`report`: a summary that fits 80 columns and the verdict (`full`: every
    dimension for every arm, the verdict's reasons, the paired test and the learning-curve crossover)."""
    v = comparison.verdict
    if not full:
        out.print(compact_summary(comparison, prices))
        stops = [a.adaptive for a in comparison.arms if a.adaptive is not None]
        if stops:  # arms stopped early hold their metric on fewer items: say so beside the table
            out.print("adaptive evaluation, test items per arm: "
                      + "; ".join(f"{s.arm} {s.items}/{s.n_test} ({s.why})" for s in stops), markup=False)
        out.print(f"\n[bold]Recommendation: {v.choice}[/bold] ({v.arm})")
        out.print("[dim]every dimension, the reasons and the statistics: the report, or --full[/dim]")
        return
    out.print(comparison_table(comparison))
    out.print(f"\n[bold]Recommendation: {v.choice}[/bold] ({v.arm})")
    for reason in v.reasons:
        out.print(f"  - {reason}")
    if comparison.test:
        out.print(f"Paired test: {comparison.test.describe()}")
    out.print(f"Learning curves: {comparison.crossover.text}")


def compact_summary(comparison: Comparison, prices: PriceTable) -> Table:
    """Arms as rows, six narrow columns: readable in an 80-column terminal however many arms there are.

    Cells fold rather than end in `…`: a long arm name wraps onto a second line of its row.
    """
    from .compare.costs import per_request

    table = Table(title=f"{comparison.experiment}: {comparison.task} on {comparison.model}",
                  box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True,
                  title_justify="left")
    # every column but the arm's has a known narrow width and keeps it; the arm name gets the rest
    table.add_column("arm", overflow="fold", ratio=1)
    table.add_column("kind", no_wrap=True)
    table.add_column(f"{comparison.metric_name or 'metric'} [95% CI]", no_wrap=True, min_width=20)
    for header in ("p95 s", "$/1k req", "training"):
        table.add_column(header, justify="right", no_wrap=True)
    for a in comparison.arms:
        dollars = 1000 * per_request(a.cost(), prices)
        table.add_row(a.name, a.kind, f"{a.metric:.3f} [{a.ci_low:.3f}, {a.ci_high:.3f}]", f"{a.latency_p95:.2f}",
                      f"${dollars:.4f}" if dollars < 100 else f"${dollars:,.0f}",
                      f"{a.setup_seconds:.0f} s" if a.setup_seconds else "-")
    return table


def comparison_table(comparison: Comparison) -> Table:
    """Every dimension (rows) for every arm (columns): today's full table, wide; the report has it too."""
    table = Table(title=f"{comparison.experiment}: {comparison.task} on {comparison.model}", show_lines=True)
    table.add_column("dimension", style="bold")
    for a in comparison.arms:
        table.add_column(a.name)
    for dim, cells in comparison.rows:
        table.add_row(dim, *[cells.get(a.name, "") for a in comparison.arms])
    return table


def print_diff(d: ExperimentDiff, out: Console) -> None:
    """`tuneoff diff`: the test set, each shared arm's metric in A and B with the paired test and its
    flipped items, and the settings that changed."""
    out.print(f"A {d.a.label} ({d.a.name})   B {d.b.label} ({d.b.name})", markup=False, highlight=False)
    out.print(d.test_set, markup=False, highlight=False)
    if d.arms:
        table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, title_justify="left")
        for header in ("arm", f"{d.arms[0].metric_name} A", "B", "B - A", "p", "flipped (better/worse)"):
            table.add_column(header, overflow="fold")
        for a in d.arms:
            t = a.test
            table.add_row(Text(a.name), f"{a.a.metric:.3f}", f"{a.b.metric:.3f}", f"{t.difference:+.3f}",
                          f"{t.p_value:.3g}{' *' if t.significant else ''}", f"{len(a.flips)} ({a.better}/{a.worse})")
        out.print(table)
        out.print("[dim]p: paired test on the shared items (McNemar for right/wrong, else a paired bootstrap); "
                  "* significant at 0.05[/dim]")
    for side, names in (("A", d.only_a), ("B", d.only_b)):
        if names:
            out.print(f"arms only in {side}: {', '.join(names)}", markup=False, highlight=False)
    if d.settings_note:
        out.print(d.settings_note, markup=False, highlight=False)
    elif not d.settings:
        out.print("settings: none changed", markup=False)
    else:
        table = Table(title="changed settings", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False,
                      title_justify="left")
        for header in ("setting", "A", "B"):
            table.add_column(header, overflow="fold")
        for s in d.settings:
            # settings are the user's text: Text() keeps a `[...]` in them from reading as markup
            table.add_row(Text(s.key), Text("(not set)" if s.a is None else s.a), Text("(not set)" if s.b is None else s.b))
        out.print(table)
