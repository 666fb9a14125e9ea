"""Reports rendered from a `Comparison`: one self-contained HTML file, Markdown and JSON.

All dataset and model text goes through Jinja2 autoescaping (the item explorer's data through
`items.explorer_json`, and into the page by textContent); the charts are inline SVG that
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
from ..compare.costs import money
from ..config.prices import PriceTable
from ..errors import TuneoffError
from .items import ItemMatrix, explorer_json, item_matrix
from .page import (GLOSSARY, header_facts, next_steps, scoreboard, short_model, short_phase, split_cell)

HERE = Path(__file__).parent
EXPLORER_JS = (HERE / "explorer.js").read_text(encoding="utf-8")
STYLE = (HERE / "report.css").read_text(encoding="utf-8")
KINDS = {"prompt": "prompt", "finetune": "fine-tuned", "combined": "fine-tuned + prompt"}


def _plain(obj):
    if dataclasses.is_dataclass(obj):
        return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set)):
        return [_plain(v) for v in obj]
    if isinstance(obj, float) and obj != obj:  # NaN is not JSON
        return None
    return obj


def to_json(c: Comparison) -> str:
    return json.dumps(_plain(c), indent=2, default=str)


def to_markdown(c: Comparison, prices: PriceTable | None = None) -> str:
    """The comparison as Markdown, in the HTML report's order. Names and data are the user's: table
    pipes and newlines are escaped here, and every `<`, `>`, `&` at the end, so a renderer that allows
    raw HTML shows `<script>` as text instead of running it."""
    esc = lambda s: str(s).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    prices = prices or PriceTable()
    names = [a.name for a in c.arms]
    m = item_matrix(c.arms)
    lines = [f"# {esc(c.experiment)}: {esc(c.task)} on {esc(short_model(c.model))}", "",
             " · ".join(f"{label} **{esc(value)}**" for label, value in header_facts(c)), "",
             f"**Verdict: {c.verdict.choice}** ({esc(c.verdict.arm)})", ""]
    lines += [f"- {r}" for r in c.verdict.reasons] + [""]
    lines += _scoreboard_markdown(c, prices, esc)
    lines += ["What to look at next:", ""] + [f"- {esc(p.text)}" for p in next_steps(c, m)] + [""]
    lines += _head_to_head_markdown(c, names, esc)
    lines += _one_off_markdown(c, esc)
    if c.test:
        lines.append(f"Paired test: {c.test.describe()}")
    lines.append(f"Learning-curve crossover: {c.crossover.text}")
    if be := c.break_even:
        lines.append(f"Break-even ({be.tuned} vs {be.prompt}): "
                     + (f"{be.volume:,.0f} requests/month" if be.volume is not None else "never") + f" — {be.reason}")
    lines += _disagreements_markdown(m, esc)
    if c.phases:
        peak = c.peak_rss_mb  # MB; a phase without a figure (total, a report rebuild) shows none
        lines += ["", "| phase | seconds | peak RSS (MB) |", "|---|---|---|"] + \
            [f"| {esc(short_phase(k))} | {v:.1f} | {peak[k]:,.0f} |" if k in peak else
             f"| {esc(short_phase(k))} | {v:.1f} | |" for k, v in c.phases.items()]
    lines += ["", "## Glossary", ""] + [f"- **{term}**: {text}" for term, text in GLOSSARY.items()]
    return html.escape("\n".join(lines) + "\n", quote=False)


def _scoreboard_markdown(c: Comparison, prices: PriceTable, esc) -> list[str]:
    mark = lambda r, col, text: f"**{text}** ★" if col in r.best else text  # noqa: E731
    lines = [f"| arm | kind | model | {esc(c.metric_name)} | 95% CI | cost / 1k requests | p95 latency | one-off |",
             "|---|---|---|---:|---|---:|---:|---:|"]
    for r in scoreboard(c, prices):
        lines.append(f"| {esc(r.arm)} | {KINDS[r.kind]} | {esc(r.model)} | {mark(r, 'metric', r.metric)} | {r.ci} | "
                     f"{mark(r, 'cost_1k', r.cost_1k)} | {mark(r, 'p95', r.p95)} | {mark(r, 'one_off', r.one_off)} |")
    return lines + ["", "★ best in its column.", ""]


def _head_to_head_markdown(c: Comparison, names: list[str], esc) -> list[str]:
    """Short cells in the table; each cell's rest as a numbered note under it."""
    lines = ["| dimension | " + " | ".join(map(esc, names)) + " |", "|---" * (len(names) + 1) + "|"]
    notes: list[str] = []
    for dim, cells in c.rows:
        row = []
        for n in names:
            short, detail = split_cell(dim, cells.get(n, ""))
            if detail:
                notes.append(f"{len(notes) + 1}. {esc(dim)}, {esc(n)}: {esc(detail)}")
                short = f"{short} [{len(notes)}]"
            row.append(esc(short))
        lines.append(f"| {dim} | " + " | ".join(row) + " |")
    return lines + [""] + (["Details:", ""] + notes + [""] if notes else [])


def _disagreements_markdown(m: ItemMatrix, esc) -> list[str]:
    picks = m.biggest_disagreements(10)
    if not picks:
        return []
    lines = ["", f"Biggest disagreements ({len(m.disagreeing_ids())} of {len(m.ids)} items disagree; every item is "
                 "in report.html's item explorer and `tuneoff report ID --items FILE`):", "",
             "| item | input | target | " + " | ".join(esc(a.name) for a in m.arms) + " |",
             "|---" * (len(m.arms) + 3) + "|"]
    for k in picks:
        cells = []
        for a in m.arms:
            s = a.scores[k]
            mark = "" if s is None else ("✓ " if s == 1 else "✗ " if s == 0 else f"{s:.2f} ")
            cells.append(esc(mark + ("—" if s is None else str(a.predictions[k])))[:60])
        text = m.inputs[k] if len(m.inputs[k]) <= 80 else m.inputs[k][:77] + "…"
        lines.append(f"| {esc(m.ids[k])} | {esc(text)} | {esc(m.targets[k])} | " + " | ".join(cells) + " |")
    return lines


def _one_off_markdown(c: Comparison, esc) -> list[str]:
    """Which parts make up each arm's one-off cost (the break-even charges the total)."""
    if not c.one_off:
        return []
    lines = ["One-off cost by part:", "", "| arm | compute | labels | people | total |", "|---|---|---|---|---|"]
    lines += [f"| {esc(n)} | {money(o.compute)} | {money(o.labels)}{_labels(c, n, esc)} | {money(o.people)} "
              f"({o.hours:g} h) | {money(o.total)} |" for n, o in c.one_off.items()]
    return lines + ["", LABEL_RULE, ""]


LABEL_RULE = ("The label rule: each arm is charged for every labelled example it consumed, once: its training "
              "examples, the demo pool it can reach, and the dev items used to tune or select it (either side); "
              "the shared test split is not charged.")


def _labels(c: Comparison, arm: str, esc) -> str:
    text = c.labels.get(arm)
    return f" ({esc(text)})" if text else ""


def environment() -> Environment:
    return Environment(loader=PackageLoader("tuneoff", "report"), autoescape=select_autoescape(["html", "j2"]))


def to_html(c: Comparison, prices: PriceTable) -> str:
    from . import plots

    charts = {"scatter": plots.accuracy_vs_cost(c, prices), "latency": plots.latency_distributions(c)}
    if c.curves:
        charts["curves"] = plots.learning_curves(c)
    if c.break_even:
        charts["break_even"] = plots.break_even_chart(c)
    confusions = {name: plots.confusion(m["labels"], m["matrix"], f"{name}: confusion matrix")
                  for name, m in c.confusion.items()}
    items = item_matrix(c.arms)
    return environment().get_template("report.html.j2").render(
        c=c, charts=charts, confusions=confusions, names=[a.name for a in c.arms], prices=prices, items=items,
        explorer_data=explorer_json(items), explorer_js=EXPLORER_JS, style=STYLE, board=scoreboard(c, prices),
        pointers=next_steps(c, items), facts=header_facts(c), glossary=GLOSSARY, kinds=KINDS, money=money,
        split_cell=split_cell, short_model=short_model, short_phase=short_phase, label_rule=LABEL_RULE)


def write_report(c: Comparison, prices: PriceTable, outdir: Path) -> dict[str, Path]:
    """Write report.html, report.md and report.json into `outdir`; returns their paths."""
    outdir.mkdir(parents=True, exist_ok=True)
    paths = {"html": outdir / "report.html", "md": outdir / "report.md", "json": outdir / "report.json"}
    texts = {"html": to_html(c, prices), "md": to_markdown(c, prices), "json": to_json(c)}
    for kind, path in paths.items():
        replace_file(path, texts[kind])
    return paths


def replace_file(path: Path, text: str) -> None:
    """Write whole or not at all: a full disk or a kill mid-write leaves the previous report."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise TuneoffError(f"cannot write the report: {exc.strerror}", file=str(path),
                           hint="free some disk space or pass --output to another folder") from None
