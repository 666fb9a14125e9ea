"""A judge pass: a model grades the arms' test outputs, and its own reliability is measured beside it.

Pointwise, each output gets a grade (1-5 or PASS/FAIL); pairwise, two arms' outputs for the same item
are compared twice, A first then B first, and a verdict that follows the position is a tie (and counts
as a position flip). Every judge call goes through the store's call cache under a run of kind `judge`,
so a rerun or an interrupted pass costs no new calls for what was judged, and the calls' tokens and
time are the judge's cost, kept apart from the arms'. Beside the scores: position-flip rate, self-
agreement on a sampled repeat, agreement with the main reference metric and, given a ratings file,
with people (`judge_stats`).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from itertools import combinations
from typing import Sequence

import numpy as np

from ..config.judge import JudgeSpec
from ..models.base import Backend, GenerationConfig
from ..store import Store, cache_key
from . import judge_stats as stats

SYSTEM = "You are a strict, impartial grader. Judge only against the criteria. Reply with the verdict only."
GRADE = re.compile(r"\b([1-5])\b")
PASS_FAIL = re.compile(r"\b(pass|fail|yes|no)\b", re.IGNORECASE)
CHOICE = re.compile(r"^\W*(?:response\s*|answer\s*)?(A|B|tie)\b", re.IGNORECASE)


@dataclass(frozen=True)
class Output:
    """One arm's output for one test item, as the judge sees it."""

    item: str
    """The test item's id."""
    arm: str
    input: str
    reference: str
    output: str
    metric: float | None = None
    """The item's score on the task's main metric, in [0, 1], higher better (for the agreement figure)."""


# -- prompts and verdicts ---------------------------------------------------------------------------
def _context(spec: JudgeSpec, out: Output) -> str:
    text = f"Criteria: {spec.criteria}\n\nInput:\n{out.input}\n\n"
    return text + (f"Reference answer:\n{out.reference}\n\n" if spec.reference else "")


def pointwise_prompt(spec: JudgeSpec, out: Output) -> list[dict]:
    ask = ("Rate the response from 1 (poor) to 5 (excellent) against the criteria. Reply with the number only."
           if spec.scale == "1-5" else "Does the response meet the criteria? Reply PASS or FAIL only.")
    return [{"role": "system", "content": SYSTEM},
            {"role": "user", "content": f"{_context(spec, out)}Response:\n{out.output}\n\n{ask}"}]


def pairwise_prompt(spec: JudgeSpec, first: Output, second: Output) -> list[dict]:
    ask = "Which response better meets the criteria? Reply A, B or TIE only."
    return [{"role": "system", "content": SYSTEM},
            {"role": "user", "content": f"{_context(spec, first)}Response A:\n{first.output}\n\n"
                                        f"Response B:\n{second.output}\n\n{ask}"}]


def parse_verdict(text: str, spec: JudgeSpec) -> float | str | None:
    """A grade (1-5, or 1.0/0.0 for PASS/FAIL), a pairwise choice (first/second/tie), or None off-format."""
    if spec.mode == "pairwise":
        m = CHOICE.search(text)
        return None if not m else {"a": stats.FIRST, "b": stats.SECOND, "tie": stats.TIE}[m.group(1).lower()]
    if spec.scale == "1-5":
        m = GRADE.search(text)
        return float(m.group(1)) if m else None
    m = PASS_FAIL.search(text)
    return None if not m else float(m.group(1).lower() in ("pass", "yes"))


# -- calls through the store's cache ------------------------------------------------------------------
@dataclass
class Request:
    """One verdict to obtain: its prompt and what it is about (stored with the call's prediction row)."""

    prompt: list[dict]
    about: dict
    """arm(s), item, order, kind (main | repeat) — the prediction row's extra."""
    item: str = ""
    input: str = ""
    reference: str = ""
    repeat: bool = False
    verdict: float | str | None = None
    reply: str = ""
    call_id: int | None = None
    attempts: int = 0


@dataclass
class JudgeCost:
    """What the judge's calls cost, apart from the arms' (cached calls are counted: the work was done once)."""

    calls: int = 0
    new_calls: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    machine_seconds: float = 0.0
    """Sum over calls of the batch wall time / batch size (the machine time each verdict took)."""
    usd: float = 0.0


class Caller:
    """Sends judge prompts through the call cache and the backend, writing calls and prediction rows."""

    chunk = 16
    """Prompts per backend call; each chunk's calls are stored before the next is sent."""

    def __init__(self, backend: Backend, model: str, store: Store, run_id: int, spec: JudgeSpec):
        self.backend, self.model, self.store, self.run_id, self.spec = backend, model, store, run_id, spec
        self.cost = JudgeCost()

    def run(self, requests: Sequence[Request], temperature: float = 0.0, seed: int | None = None) -> None:
        config = GenerationConfig(max_new_tokens=self.spec.max_new_tokens, temperature=temperature, seed=seed)
        params = {"mode": "judge", "max_new_tokens": config.max_new_tokens, "temperature": temperature,
                  "seed": seed if temperature > 0 else None}
        todo = []
        for r in requests:
            text = self.backend.render(r.prompt)
            row = self.store.cached_call(cache_key(self.model, text, params))
            if row is None:
                todo.append((r, text))
            else:
                self._take(r, row["id"], row["output"], row, cached=True)
        # chunk by chunk, each chunk's calls stored as it finishes: an interrupted pass resumes from there
        for start in range(0, len(todo), self.chunk):
            part = todo[start:start + self.chunk]
            done = self.backend.generate([r.prompt for r, _ in part], config)
            for (r, text), c in zip(part, done):
                call_id = self.store.add_call(run_id=self.run_id, model=self.model, prompt=text, params=params,
                                              **c.call_fields())
                self._take(r, call_id, c.text, c.call_fields(), cached=False)

    def _take(self, r: Request, call_id: int, reply: str, fields, cached: bool) -> None:
        r.call_id, r.reply, r.attempts = call_id, reply, r.attempts + 1
        r.verdict = parse_verdict(reply, self.spec)
        c = self.cost
        c.calls += 1
        c.new_calls += 0 if cached else 1
        c.tokens_in += int(fields["tokens_in"])
        c.tokens_out += int(fields["tokens_out"])
        c.machine_seconds += float(fields["latency_s"]) / max(int(fields["batch_size"] or 1), 1)

    def verdicts(self, requests: Sequence[Request], temperature: float = 0.0) -> None:
        """Verdicts for all requests; off-format ones asked again (sampled, seeded), at most `retries` times."""
        self.run(requests, temperature, seed=1 if temperature > 0 else None)
        for attempt in range(self.spec.retries):
            again = [r for r in requests if r.verdict is None]
            if not again:
                break
            self.run(again, temperature=max(temperature, 0.7), seed=100 + attempt)

    def store_rows(self, requests: Sequence[Request], start: int) -> None:
        self.store.add_predictions(self.run_id, [
            {"item": start + i, "example_id": r.item, "input": r.input, "target": r.reference, "output": r.reply,
             "prediction": None if r.verdict is None else str(r.verdict), "call_id": r.call_id,
             "extra": {**r.about, "repeat": r.repeat, "off_format": r.verdict is None, "attempts": r.attempts}}
            for i, r in enumerate(requests)])


def fingerprint(model: str, spec: JudgeSpec, outputs: dict[str, list[Output]]) -> str:
    blob = json.dumps({"model": model, "spec": {k: v for k, v in vars(spec).items() if k != "base_dir"},
                       "outputs": {a: [(o.item, o.output) for o in outs] for a, outs in sorted(outputs.items())}},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


@dataclass
class JudgeReport:
    """A judge pass's figures: per-arm scores and the judge's reliability beside them."""

    run_id: int
    mode: str
    scores: dict[str, dict] = field(default_factory=dict)
    """arm -> {"value", "ci_low", "ci_high", "n"}: mean grade (pointwise) or win rate (pairwise, ties half)."""
    reliability: dict[str, dict | float | None] = field(default_factory=dict)
    """position_flip_rate, self_agreement, off_format_rate, metric_agreement, arm_rank_tau, human."""
    cost: JudgeCost = field(default_factory=JudgeCost)

    def to_dict(self) -> dict:
        return {"run_id": self.run_id, "mode": self.mode, "scores": self.scores, "reliability": self.reliability,
                "cost": vars(self.cost)}


def mean_ci(values: Sequence[float], seed: int = 0, resamples: int = 1000) -> dict:
    v = np.asarray(values, dtype=float)
    if not len(v):
        return {"value": None, "ci_low": None, "ci_high": None, "n": 0}
    idx = np.random.default_rng(seed).integers(0, len(v), size=(resamples, len(v)))
    low, high = np.quantile(v[idx].mean(1), [0.025, 0.975])
    return {"value": float(v.mean()), "ci_low": float(low), "ci_high": float(high), "n": int(len(v))}


def arm_pairs(spec: JudgeSpec, arms: Sequence[str]) -> list[tuple[str, str]]:
    return [tuple(p) for p in spec.pairs] if spec.pairs else list(combinations(arms, 2))


# -- the pass ------------------------------------------------------------------------------------------
def judge_pass(backend: Backend, spec: JudgeSpec, outputs: dict[str, list[Output]], store: Store, *,
               experiment_id: int | None = None, task: str = "", hardware_per_hour: float = 0.10) -> JudgeReport:
    """Judge every arm's outputs (`outputs`: arm -> its first `spec.items` outputs), store the verdicts,
    their calls and figures under one `judge` run, and return them. A rerun reuses the stored calls."""
    from .engine import model_id

    model = model_id(backend)
    # ratings may name any scored test item (checked against all of them), the judge sees the first n
    scored = {o.item for outs in outputs.values() for o in outs}
    ratings = stats.read_ratings(_ratings_path(spec), scored, set(outputs)) if spec.ratings else None
    outputs = {arm: outs[:spec.items] for arm, outs in outputs.items()}
    key = fingerprint(model, spec, outputs)
    found = store.find_run(key)
    if found is not None:
        run_id = int(found["id"])
        store.reopen_run(run_id)
    else:
        run_id = store.start_run("judge", task=task, split="test", model=model, fingerprint=key,
                                 experiment_id=experiment_id,
                                 spec={k: v for k, v in vars(spec).items() if k != "base_dir"})
    caller = Caller(backend, model, store, run_id, spec)
    report = JudgeReport(run_id, spec.mode)
    per_output = (_pairwise if spec.mode == "pairwise" else _pointwise)(caller, spec, outputs, report)
    _agreements(spec, outputs, per_output, report, ratings)
    report.cost = caller.cost
    report.cost.usd = _usd(spec, caller.cost, hardware_per_hour)
    _store_figures(store, report)
    store.finish_run(run_id, summary=report.to_dict())
    return report


def _requests_pointwise(spec: JudgeSpec, outputs: dict[str, list[Output]], repeat: bool) -> list[Request]:
    reqs = []
    for arm, outs in outputs.items():
        for o in outs[:spec.repeat_items] if repeat else outs:
            reqs.append(Request(pointwise_prompt(spec, o), {"arm": arm}, o.item, o.input, o.reference, repeat))
    return reqs


def _pointwise(caller: Caller, spec: JudgeSpec, outputs, report: JudgeReport) -> dict[tuple[str, str], float]:
    main = _requests_pointwise(spec, outputs, repeat=False)
    caller.verdicts(main)
    again = _requests_pointwise(spec, outputs, repeat=True) if spec.repeat_items else []
    caller.verdicts(again, temperature=spec.repeat_temperature) if again else None
    caller.store_rows(main + again, 0)
    grades = {(r.item, r.about["arm"]): float(r.verdict) for r in main if r.verdict is not None}
    for arm in outputs:
        report.scores[arm] = mean_ci([g for (_, a), g in grades.items() if a == arm])
    firm = [([r.about["arm"]], grades.get((r.item, r.about["arm"])), r.verdict) for r in again]
    report.reliability["self_agreement"] = stats.by_arm([(arms, a == b) for arms, a, b in firm
                                                         if a is not None and b is not None])
    report.reliability["off_format_rate"] = stats.by_arm([([r.about["arm"]], r.verdict is None) for r in main])
    report.reliability["position_flip_rate"] = None  # pointwise shows one output: no position to flip
    metric = _metric_scores(outputs)
    report.reliability["metric_agreement"] = stats.concordance(grades, metric)
    return grades


def _pair_requests(spec: JudgeSpec, outputs, pairs, repeat: bool) -> list[Request]:
    reqs = []
    for a, b in pairs:
        by_item = {o.item: o for o in outputs[b]}
        shown = [o for o in outputs[a] if o.item in by_item]
        for o in shown[:spec.repeat_items] if repeat else shown:
            other = by_item[o.item]
            reqs.append(Request(pairwise_prompt(spec, o, other), {"arms": [a, b], "order": "AB"},
                                o.item, o.input, o.reference, repeat))
            if not repeat:  # the swapped order; the repeat re-asks the first order only
                reqs.append(Request(pairwise_prompt(spec, other, o), {"arms": [a, b], "order": "BA"},
                                    o.item, o.input, o.reference))
    return reqs


def _pairwise(caller: Caller, spec: JudgeSpec, outputs, report: JudgeReport) -> dict[tuple[str, str], float]:
    pairs = arm_pairs(spec, list(outputs))
    main = _pair_requests(spec, outputs, pairs, repeat=False)
    caller.verdicts(main)
    again = _pair_requests(spec, outputs, pairs, repeat=True) if spec.repeat_items else []
    caller.verdicts(again, temperature=spec.repeat_temperature) if again else None
    caller.store_rows(main + again, 0)
    orders = {(r.item, *r.about["arms"], r.about["order"]): r.verdict for r in main}
    verdicts, flips = {}, []  # flips: ((arm a, arm b), flipped)
    for item, a, b, order in orders:
        if order == "AB":
            verdict, flipped = stats.combine_orders(orders[(item, a, b, "AB")], orders[(item, a, b, "BA")])
            if verdict is not None:
                verdicts[(item, a, b)] = verdict
                flips.append(((a, b), flipped))
    wins: dict[tuple[str, str], list[float]] = {}
    for (item, a, b), v in verdicts.items():
        wins.setdefault((item, a), []).append(1.0 if v == "A" else 0.5 if v == stats.TIE else 0.0)
        wins.setdefault((item, b), []).append(1.0 if v == "B" else 0.5 if v == stats.TIE else 0.0)
    per_output = {k: float(np.mean(v)) for k, v in wins.items()}
    for arm in outputs:
        report.scores[arm] = mean_ci([s for (_, a), s in per_output.items() if a == arm])
    report.reliability["position_flip_rate"] = stats.by_arm(flips)
    firm = [(r.about["arms"], orders.get((r.item, *r.about["arms"], "AB")), r.verdict) for r in again]
    report.reliability["self_agreement"] = stats.by_arm([(arms, a == b) for arms, a, b in firm
                                                         if a is not None and b is not None])
    report.reliability["off_format_rate"] = stats.by_arm([(r.about["arms"], r.verdict is None) for r in main])
    report.reliability["metric_agreement"] = stats.pairwise_concordance(verdicts, _metric_scores(outputs))
    return per_output


def _metric_scores(outputs) -> dict[tuple[str, str], float]:
    return {(o.item, arm): o.metric for arm, outs in outputs.items() for o in outs if o.metric is not None}


def _ratings_path(spec: JudgeSpec):
    from pathlib import Path

    path = Path(spec.ratings).expanduser()
    return path if path.is_absolute() else Path(spec.base_dir) / path


def _agreements(spec: JudgeSpec, outputs, per_output: dict[tuple[str, str], float], report: JudgeReport,
                ratings: list | None) -> None:
    """Arm-level rank agreement with the metric, and agreement with people when ratings are given."""
    metric = _metric_scores(outputs)
    arms = [a for a in outputs if report.scores[a]["value"] is not None and any(k[1] == a for k in metric)]
    metric_means = [float(np.mean([v for (_, a), v in metric.items() if a == arm])) for arm in arms]
    report.reliability["arm_rank_tau"] = stats.kendall_tau([report.scores[a]["value"] for a in arms], metric_means)
    if ratings:
        binary = spec.mode == "pointwise" and spec.scale == "pass/fail"
        human = stats.human_agreement(per_output, ratings, binary)
        report.reliability["human"] = {**human, "value": human["concordance"]["value"]}


def _usd(spec: JudgeSpec, cost: JudgeCost, hardware_per_hour: float) -> float:
    if spec.input_per_1k_tokens is not None:
        return cost.tokens_in / 1000 * spec.input_per_1k_tokens + cost.tokens_out / 1000 * spec.output_per_1k_tokens
    return cost.machine_seconds / 3600 * hardware_per_hour


def _store_figures(store: Store, report: JudgeReport) -> None:
    name = "judge_win_rate" if report.mode == "pairwise" else "judge_score"
    for arm, s in report.scores.items():
        store.set_metric(report.run_id, f"{name}:{arm}", s["value"], s["ci_low"], s["ci_high"], {"n": s["n"]})
    for key, value in report.reliability.items():
        if isinstance(value, dict):
            store.set_metric(report.run_id, f"judge_{key}", value.get("value"), extra=value)
        else:
            store.set_metric(report.run_id, f"judge_{key}", value)
    store.set_metric(report.run_id, "judge_cost_usd", report.cost.usd, extra=vars(report.cost))
