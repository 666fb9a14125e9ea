"""Reports rendered from a `Comparison`: one self-contained HTML file, Markdown and JSON.

All dataset and model text goes through Jinja2 autoescaping; the charts are inline SVG that
matplotlib writes with its own XML escaping.
"""

from __future__ import annotations

import dataclasses
import html
import json
import os
from pathlib import Path

from jinja2 import Environment, PackageLoader, select_autoescape

from ..compare import Comparison
from ..config.prices import PriceTable
from ..errors import TuneoffError
from .items import explorer_json, item_matrix

EXPLORER_JS = (Path(__file__).parent / "explorer.js").read_text(encoding="utf-8")


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
    """The comparison as Markdown. Names and data are the user's: table pipes and newlines
    are escaped here, and every `<`, `>`, `&` at the end, so a renderer that allows raw HTML
    shows `<script>` as text instead of running it."""
    esc = lambda s: str(s).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    names = [a.name for a in c.arms]
    lines = [f"# {esc(c.experiment)}: {esc(c.task)} on {esc(c.model)}", "",
             f"**Verdict: {c.verdict.choice}** ({esc(c.verdict.arm)})", ""]
    lines += [f"- {r}" for r in c.verdict.reasons] + [""]
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
        peak = c.peak_rss_mb  # MB; a phase without a figure (total, a report rebuild) shows none
        lines += ["", "| phase | seconds | peak RSS (MB) |", "|---|---|---|"] + \
            [f"| {esc(k)} | {v:.1f} | {peak[k]:,.0f} |" if k in peak else f"| {esc(k)} | {v:.1f} | |"
             for k, v in c.phases.items()]
    return html.escape("\n".join(lines) + "\n", quote=False)


def _one_off_markdown(c: Comparison, esc) -> list[str]:
    """Which parts make up each arm's one-off cost (the break-even charges the total)."""
    if not c.one_off:
        return []
    lines = ["One-off cost by part:", "", "| arm | compute | labels | people | total |", "|---|---|---|---|---|"]
    lines += [f"| {esc(n)} | ${o.compute:.2f} | ${o.labels:.2f}{_labels(c, n, esc)} | ${o.people:.2f} ({o.hours:g} h) "
              f"| ${o.total:.2f} |" for n, o in c.one_off.items()]
    return lines + ["", LABEL_RULE, ""]


LABEL_RULE = ("The label rule: each arm is charged for every labelled example it consumed, once: its training "
              "examples, the demo pool it can reach, and the dev items used to tune or select it (either side); "
              "the shared test split is not charged.")


def _labels(c: Comparison, arm: str, esc) -> str:
    text = c.labels.get(arm)
    return f" ({esc(text)})" if text else ""


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
    items = item_matrix(c.arms)
    return env.get_template("report.html.j2").render(c=c, charts=charts, confusions=confusions,
                                                     names=[a.name for a in c.arms], prices=prices, items=items,
                                                     explorer_data=explorer_json(items), explorer_js=EXPLORER_JS,
                                                     label_rule=LABEL_RULE)


def write_report(c: Comparison, prices: PriceTable, outdir: Path) -> dict[str, Path]:
    """Write report.html, report.md and report.json into `outdir`; returns their paths."""
    outdir.mkdir(parents=True, exist_ok=True)
    paths = {"html": outdir / "report.html", "md": outdir / "report.md", "json": outdir / "report.json"}
    texts = {"html": to_html(c, prices), "md": to_markdown(c), "json": to_json(c)}
    for kind, path in paths.items():
        _replace_file(path, texts[kind])
    return paths


def _replace_file(path: Path, text: str) -> None:
    """Write whole or not at all: a full disk or a kill mid-write leaves the previous report."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise TuneoffError(f"cannot write the report: {exc.strerror}", file=str(path),
                           hint="free some disk space or pass --output to another folder") from None
