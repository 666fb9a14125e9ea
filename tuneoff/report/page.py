"""What the report's first screen and its long table show, as plain data for the templates: the
scoreboard (one row per arm, best cells marked), what to look at next, short cells with their
details apart, short model names, the header's facts and the glossary."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

from ..compare import Comparison
from ..compare.costs import money, per_request
from ..config.prices import PriceTable
from .items import ItemMatrix


@dataclass
class BoardRow:
    """One arm on the scoreboard; `best` names the columns where it is best."""

    arm: str
    kind: str
    model: str
    model_full: str
    metric: str
    ci: str
    cost_1k: str
    p95: str
    one_off: str
    best: set[str] = field(default_factory=set)


def higher_is_better(c: Comparison) -> bool:
    """The main metric's direction, as its registry entry declares it (accuracy-like when it says none)."""
    from .. import metrics

    m = getattr(metrics, "METRICS", {}).get(c.metric_name)
    return bool(getattr(m, "higher_is_better", True))


def scoreboard(c: Comparison, prices: PriceTable) -> list[BoardRow]:
    rows, values = [], {"metric": [], "cost_1k": [], "p95": [], "one_off": []}
    sign = 1 if higher_is_better(c) else -1
    for a in c.arms:
        cost = 1000 * per_request(a.cost(), prices)
        one = c.one_off[a.name].total if a.name in c.one_off else 0.0
        rows.append(BoardRow(a.name, a.kind, short_model(a.model), a.model,
                             f"{a.metric:.3f}" + (f" ± {a.metric_std:.3f}" if a.metric_std is not None else ""),
                             f"[{a.ci_low:.3f}, {a.ci_high:.3f}]", money(cost), f"{a.latency_p95:.2f} s", money(one)))
        values["metric"].append(-sign * a.metric)
        values["cost_1k"].append(cost)
        values["p95"].append(a.latency_p95)
        values["one_off"].append(one)
    for column, vs in values.items():
        winners = [row for row, v in zip(rows, vs) if v == min(vs)]
        if len(winners) * 2 <= len(rows) and len(vs) > 1:  # a column where half the arms tie marks nobody
            for row in winners:
                row.best.add(column)
    return rows


@dataclass
class Pointer:
    """A line of "what to look at next", with the view of the report it opens."""

    text: str
    href: str


def next_steps(c: Comparison, m: ItemMatrix) -> list[Pointer]:
    n = len(m.ids)
    out = []
    disagree = sum(m.disagree(k) for k in range(n))
    if len(m.arms) > 1:
        out.append(Pointer(f"{disagree} of {n} test items where the arms give different answers, widest score "
                           f"spread first", "#items?f=disagree&sort=spread"))
    if c.test is not None:
        a, b = c.test.a, c.test.b
        ia, ib = _arm(m, a), _arm(m, b)
        if ia is not None and ib is not None:
            worse_b = sum(1 for x, y in zip(ia.scores, ib.scores) if x is not None and y is not None and y < x)
            worse_a = sum(1 for x, y in zip(ia.scores, ib.scores) if x is not None and y is not None and x < y)
            verdict = "significant" if c.test.significant else "not significant"
            out.append(Pointer(f"{worse_a} items where {b} (best fine-tuned) beats {a} (best prompt arm), {worse_b} "
                               f"the other way (p={c.test.p_value:.2g}, {verdict})",
                               f"#items?f=worse&a={_q(a)}&b={_q(b)}&sort=diff"))
    flagged = sum(m.flagged(k) for k in range(n))
    if flagged:
        out.append(Pointer(f"{flagged} items where some arm broke the answer format or answered outside the labels",
                           "#items?f=flagged"))
    if c.break_even is not None:
        be = c.break_even
        where = f"{be.volume:,.0f} requests/month" if be.volume is not None else "never"
        out.append(Pointer(f"break-even of {be.tuned} against {be.prompt}: {where}", "#break-even"))
    if c.curves:
        out.append(Pointer(f"learning curves: {c.crossover.text}", "#curves"))
    return out


def _arm(m: ItemMatrix, name: str):
    return next((a for a in m.arms if a.name == name), None)


def _q(name: str) -> str:
    from urllib.parse import quote

    return quote(name, safe="")


HASHED = re.compile(r"-[0-9a-f]{10}\b")
"""A model folder's config hash (`lora-e485d77357`): it tells runs apart on disk, not to a reader."""


def short_model(spec: str) -> str:
    """`embedded:smollm2-135m-instruct` -> `smollm2-135m-instruct`; a folder -> its last part without the
    config hash (`/…/models/lora-e485d77357` -> `lora`); the full spec goes on hover."""
    if ":" in spec and not spec.startswith(("/", ".")) and "://" not in spec:
        return spec.split(":", 1)[1]
    if "://" in spec:
        return spec.split("?model=")[-1] if "?model=" in spec else spec.split("://", 1)[1].split("/")[0]
    last = spec.rstrip("/").rsplit("/", 1)[-1] or spec
    return HASHED.sub("", last)


def short_phase(name: str) -> str:
    return HASHED.sub("", name)


SPLIT = re.compile(r" \(|; | = ")


def split_cell(dimension: str, text: str) -> tuple[str, str]:
    """(what the cell says in a few words, the rest): the head-to-head shows the first and keeps the
    second on hover and behind "show details". Cut at the first ` (`, `; ` or ` = `."""
    if dimension == "Model":  # a folder's path goes behind its short name; a named model is its name
        spec = text.split(" (", 1)[0]
        return short_model(spec), text if "/" in spec or spec != text else ""
    if dimension == "Performance":  # the value and its CI stay; a warning about the arm stays visible too
        head, _, rest = text.partition("; ")
        if "NOT A FAIR REPRESENTATIVE" in rest:
            head += "; not a fair representative of its side"
        return head, rest
    match = SPLIT.search(text)
    if match is None or match.start() < 3:
        return text, ""
    rest = text[match.start():].strip().lstrip("=;").strip()
    if rest.startswith("(") and rest.endswith(")") and rest.count("(") == 1:
        rest = rest[1:-1]
    return text[:match.start()], rest


def header_facts(c: Comparison) -> list[tuple[str, str]]:
    """(label, value) pairs for the header: experiment id and date, versions, machine, dtype."""
    env = c.environment or {}
    facts = [("experiment", str(c.experiment_id) if c.experiment_id is not None else "not stored")]
    if c.created_at:
        facts.append(("run", time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(c.created_at))))
    if env:
        facts.append(("tuneoff / torch / transformers", " / ".join(env.get(k) or "?" for k in
                                                                   ("tuneoff", "torch", "transformers"))))
        facts.append(("CPU", env.get("cpu") or "unknown"))
        facts.append(("GPU", env.get("gpu") or "none"))
    else:
        facts.append(("environment", "not recorded (a store written before tuneoff recorded it)"))
    if c.dtype:
        facts.append(("dtype", c.dtype))
    return facts


GLOSSARY = {
    "main metric": "The task's metric on the test split, the one the verdict ranks arms by (accuracy: share of items answered right).",
    "95% CI": "Range that holds the true metric 95% of the time: bootstrap over test items (and over repeated runs when the arm was repeated).",
    "± / seed spread": "Standard deviation of the metric over repeated runs with new seeds (training init, data order, demo draws).",
    "paraphrase spread": "Standard deviation of the metric over reworded instructions (the consistency probe).",
    "deterministic": "An arm with nothing random in it (scored labels, fixed demos): one run, since a repeat gives the same answers.",
    "not a fair representative": "An arm that collapsed (answers nearly one label, or never a frequent class): it is kept out of the side-vs-side comparison.",
    "agreement": "Share of items whose answer stays the same when the instruction is reworded or the seed changes.",
    "collapsed": "A run whose metric fell to the majority-class rate or below: it learned to give one answer.",
    "paired test": "McNemar's exact test on the items two arms both scored (right/wrong scores), or a paired bootstrap for graded scores; significant when p < 0.05.",
    "flipped item": "In `tuneoff diff`, an item whose score changed from one experiment to the other.",
    "arms disagree": "The arms that scored an item gave different parsed answers.",
    "format violation": "No answer could be parsed from the output (or label scoring failed).",
    "hallucinated label": "The parsed answer is not one of the task's labels.",
    "label TV": "Total variation distance between the predicted and the true label distribution: 0 same, 1 disjoint.",
    "worst recall": "Recall of the class the arm finds least often.",
    "cost per 1k requests": "Serving 1,000 requests: machine time per request x the hourly price (hardware prices), or tokens x token prices (API prices).",
    "one-off cost": "Paid once before the first request: compute (training, prompt optimisation), labels the arm needs, people's hours.",
    "p50 / p95 latency": "Median / 95th-percentile seconds one request waits, from the serving probe (or the evaluation batches where no probe ran).",
    "break-even": "Monthly request volume from which the fine-tuned arm, one-off cost included, is cheaper than the prompt arm at equal or better quality.",
    "Pareto front": "Arms no other arm beats on both cost and quality.",
    "crossover": "Smallest number of training examples at which fine-tuning beats the best prompt arm.",
    "serving probe": "Requests sent to an arm after its evaluation, one at a time and concurrently, on the same weights: its latency and throughput.",
    "tuning on dev": "The search an arm got on the dev split (candidates, minutes, what was chosen) before its single test evaluation.",
    "knowledge source": "Where the arm's task knowledge lives: the prompt (weights fixed) or the weights (fine-tuned).",
    "flexibility": "A fine-tuned model's score on an unrelated task against the base model's: what tuning cost elsewhere.",
    "out of domain": "The arm on a test file from another domain with the same labels; the drop is against its in-domain score.",
    "judge": "A model that grades each reply (pointwise 1-5 or pass/fail, or pairwise); its reliability row says how far its grades can be trusted (agreement with itself, with swapped order, with people where given).",
    "unsupported content": "A reply stating a number, name or quote that its input (and references) do not contain.",
    "adaptive evaluation": "Test items scored in chunks; an arm stops once an anytime-valid confidence sequence settles it against the leader.",
}
"""Every term the report uses, defined once (the report's glossary section)."""
