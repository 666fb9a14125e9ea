"""What an arm costs: per request (tokens or measured machine time) and one-off (training or
optimisation compute, labelled examples, people's hours), and the monthly volume at which a
fine-tuned arm pays back its one-off cost.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..config.prices import PriceTable


@dataclass
class ArmCost:
    """Measured usage of one arm, the inputs to its cost."""

    tokens_in: float
    """Mean input tokens per request."""
    tokens_out: float
    """Mean output tokens per request."""
    seconds_per_request: float
    """Machine time per request: the serving probe's at its stated concurrency, or (stores without a
    probe) the evaluation's batch wall time / batch size."""
    finetuned: bool = False
    one_off_seconds: float = 0.0
    """Training or optimisation wall time."""
    training_tokens: int = 0
    labels_needed: int = 0
    """Labelled examples the arm needs (demo pool, training set, dev items for optimising)."""
    written: bool = False
    """The examples' targets are written text (free-text task), priced at `written_per_example`."""
    one_off_dollars: float = 0.0
    """One-off $ measured elsewhere (a distilled arm's teacher calls, priced at the teacher's rates)."""
    prices: PriceTable | None = None
    """The arm's own prices (an arm on a hosted model next to one on our own hardware); None: the experiment's."""


@dataclass
class OneOff:
    """An arm's one-off cost, by part: what the report shows and the break-even charges."""

    compute: float
    """Training or optimisation: machine time x training rate (api mode: training tokens x price)."""
    labels: float
    """Examples needed x their price by kind (`label_per_example` or `written_per_example`)."""
    people: float
    """Engineer hours x `prices.engineer_per_hour`."""
    hours: float
    """Prompt hours (every arm), plus data-preparation hours for arms whose weights change."""
    total: float
    other: float = 0.0
    """One-off $ measured elsewhere: a distilled arm's teacher calls, at the teacher's prices."""


def _own(cost: ArmCost, prices: PriceTable) -> PriceTable:
    return cost.prices if cost.prices is not None else prices


def money(x: float) -> str:
    """Dollars as people write them: cents from $1 up ($1,234.50), whole dollars from $10,000, and two
    significant digits below $1 ($0.0028, $0.0000081), so small per-request figures still compare."""
    if x != x:  # NaN
        return "n/a"
    if x < 0:
        return "-" + money(-x)
    if x == 0:
        return "$0"
    if x >= 10_000:
        return f"${x:,.0f}"
    if x >= 1:
        return f"${x:,.2f}"
    digits = max(2, 1 - math.floor(math.log10(x)))
    return f"${x:.{digits}f}"


def per_request(cost: ArmCost, prices: PriceTable) -> float:
    """$ per request, at the arm's own prices when it has them."""
    prices = _own(cost, prices)
    if prices.mode == "hardware":
        return prices.hardware_per_hour / 3600.0 * cost.seconds_per_request
    pin = prices.finetuned_input_per_1k_tokens if cost.finetuned and prices.finetuned_input_per_1k_tokens is not None \
        else prices.input_per_1k_tokens
    pout = prices.finetuned_output_per_1k_tokens if cost.finetuned and prices.finetuned_output_per_1k_tokens is not None \
        else prices.output_per_1k_tokens
    return cost.tokens_in / 1000 * pin + cost.tokens_out / 1000 * pout


def one_off_parts(cost: ArmCost, prices: PriceTable) -> OneOff:
    """$ once, before the first request, by part: compute, labels, people, and one-off $ measured elsewhere
    (a distilled arm's teacher calls). An arm with its own prices is priced at them."""
    prices = _own(cost, prices)
    if prices.mode == "api" and cost.finetuned and prices.training_per_1k_tokens is not None:
        compute = cost.training_tokens / 1000 * prices.training_per_1k_tokens
    else:
        rate = prices.training_per_hour if prices.training_per_hour is not None else prices.hardware_per_hour
        compute = rate / 3600.0 * cost.one_off_seconds
    # a fine-tune needs its training data collected and formatted; every arm needs its prompt written
    hours = prices.prompt_hours + (prices.data_hours if cost.finetuned else 0.0)
    labels = cost.labels_needed * prices.per_example(cost.written)
    people = hours * prices.engineer_per_hour
    return OneOff(compute, labels, people, hours, compute + labels + people + cost.one_off_dollars,
                  cost.one_off_dollars)


def one_off(cost: ArmCost, prices: PriceTable) -> float:
    """$ once: compute, labels, people's time and teacher calls before the first request (see `one_off_parts`)."""
    return one_off_parts(cost, prices).total


def monthly(cost: ArmCost, prices: PriceTable, requests_per_month: float) -> float:
    """$ per month at a volume, one-off costs spread over the horizon."""
    return one_off(cost, prices) / _own(cost, prices).horizon_months + per_request(cost, prices) * requests_per_month


@dataclass
class Payback:
    volume: float | None
    """Monthly requests above which `challenger` is cheaper than `incumbent`; None if never."""
    reason: str


NOISE = 0.10
"""Machine-time costs closer than this (relative), or prompts this close in length, are the same cost:
timing noise would otherwise turn a 1% gap into a break-even of a hundred million requests a month."""


def _same_within_noise(a: ArmCost, b: ArmCost, prices: PriceTable, ca: float, cb: float) -> bool:
    """Both arms priced by measured machine time, and their costs or prompt lengths within NOISE."""
    if _own(a, prices).mode != "hardware" or _own(b, prices).mode != "hardware":
        return False  # token prices are exact: any gap is real
    close_cost = abs(ca - cb) <= NOISE * max(ca, cb)
    close_prompt = abs(a.tokens_in - b.tokens_in) <= NOISE * max(a.tokens_in, b.tokens_in, 1e-9)
    return close_cost or close_prompt


def payback(incumbent: ArmCost, challenger: ArmCost, prices: PriceTable) -> Payback:
    """Volume where the challenger's (usually fine-tuned) lower per-request cost pays back its one-off cost."""
    c_inc, c_ch = per_request(incumbent, prices), per_request(challenger, prices)
    fixed = (one_off(challenger, prices) - one_off(incumbent, prices)) / prices.horizon_months
    if fixed > 0 and _same_within_noise(incumbent, challenger, prices, c_inc, c_ch):
        return Payback(None, f"never: the per-request costs are equal within measurement noise (${c_ch:.2e} vs "
                             f"${c_inc:.2e}; prompts of {challenger.tokens_in:.0f} and {incumbent.tokens_in:.0f} "
                             "tokens), so a higher one-off cost is never repaid")
    if c_ch >= c_inc:
        if c_ch == c_inc and fixed <= 0:
            return Payback(0.0, "cheaper or equal at any volume (same per-request cost, no higher one-off)")
        # a higher per-request cost loses at high volume whatever it saves up front
        return Payback(None, f"never: its cost per 1k requests ({money(1000 * c_ch)}) is not below "
                             f"{money(1000 * c_inc)}")
    volume = max(fixed, 0.0) / (c_inc - c_ch)
    return Payback(volume, f"one-off {money(fixed * prices.horizon_months)} repaid at "
                             f"{money(1000 * (c_inc - c_ch))} saved per 1k requests over {prices.horizon_months:g} months")


def cost_curve(cost: ArmCost, prices: PriceTable, volumes: list[float]) -> list[float]:
    return [monthly(cost, prices, v) for v in volumes]
