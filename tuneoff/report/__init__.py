"""Reports rendered from a `Comparison`: one self-contained HTML file, Markdown and JSON.

All dataset and model text goes through Jinja2 autoescaping; the charts are inline SVG that
matplotlib writes with its own XML escaping.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from jinja2 import Environment, PackageLoader, select_autoescape

from ..compare import Comparison
from ..config.prices import PriceTable


def _plain(obj):
    if dataclasses.is_dataclass(obj):
        return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, float) and obj != obj:  # NaN is not JSON
        return None
    return obj


def to_json(c: Comparison) -> str:
    return json.dumps(_plain(c), indent=2, default=str)


def to_markdown(c: Comparison) -> str:
    names = [a.name for a in c.arms]
    lines = [f"# {c.experiment}: {c.task} on {c.model}", "",
             f"**Verdict: {c.verdict.choice}** ({c.verdict.arm})", ""]
    lines += [f"- {r}" for r in c.verdict.reasons] + [""]
    esc = lambda s: str(s).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    lines.append("| dimension | " + " | ".join(map(esc, names)) + " |")
    lines.append("|---" * (len(names) + 1) + "|")
    for dim, cells in c.rows:
        lines.append(f"| {dim} | " + " | ".join(esc(cells.get(n, "")) for n in names) + " |")
    lines.append("")
    lines += _one_off_markdown(c, esc)
    if c.test:
        lines.append(f"Paired test: {c.test.describe()}")
    lines.append(f"Learning-curve crossover: {c.crossover.text}")
    if be := c.break_even:
        lines.append(f"Break-even ({be.tuned} vs {be.prompt}): "
                     + (f"{be.volume:,.0f} requests/month" if be.volume is not None else "never") + f" — {be.reason}")
    if c.phases:
        lines += ["", "| phase | seconds |", "|---|---|"] + [f"| {esc(k)} | {v:.1f} |" for k, v in c.phases.items()]
    return "\n".join(lines) + "\n"


def _one_off_markdown(c: Comparison, esc) -> list[str]:
    """Which parts make up each arm's one-off cost (the break-even charges the total)."""
    if not c.one_off:
        return []
    lines = ["One-off cost by part:", "", "| arm | compute | labels | people | total |", "|---|---|---|---|---|"]
    lines += [f"| {esc(n)} | ${o.compute:.2f} | ${o.labels:.2f} | ${o.people:.2f} ({o.hours:g} h) | ${o.total:.2f} |"
              for n, o in c.one_off.items()]
    return lines + [""]


def to_html(c: Comparison, prices: PriceTable) -> str:
    from . import plots

    env = Environment(loader=PackageLoader("tuneoff", "report"), autoescape=select_autoescape(["html", "j2"]))
    charts = {"scatter": plots.accuracy_vs_cost(c, prices), "latency": plots.latency_distributions(c)}
    if c.curves:
        charts["curves"] = plots.learning_curves(c)
    if c.break_even:
        charts["break_even"] = plots.break_even_chart(c)
    confusions = {name: plots.confusion(m["labels"], m["matrix"], f"{name}: confusion matrix")
                  for name, m in c.confusion.items()}
    return env.get_template("report.html.j2").render(c=c, charts=charts, confusions=confusions,
                                                     names=[a.name for a in c.arms], prices=prices)


def write_report(c: Comparison, prices: PriceTable, outdir: Path) -> dict[str, Path]:
    """Write report.html, report.md and report.json into `outdir`; returns their paths."""
    outdir.mkdir(parents=True, exist_ok=True)
    paths = {"html": outdir / "report.html", "md": outdir / "report.md", "json": outdir / "report.json"}
    paths["html"].write_text(to_html(c, prices), encoding="utf-8")
    paths["md"].write_text(to_markdown(c), encoding="utf-8")
    paths["json"].write_text(to_json(c), encoding="utf-8")
    return paths
