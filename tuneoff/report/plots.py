"""The report's charts as inline SVG (matplotlib, Agg): no JavaScript, no network, one file."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")  # headless: never open a window
matplotlib.rcParams["text.parse_math"] = False  # a "$" in an arm or label name is text, not TeX
matplotlib.rcParams["svg.hashsalt"] = "tuneoff"  # stable ids: same data, same file
import matplotlib.pyplot as plt  # noqa: E402

from ..compare import Comparison  # noqa: E402
from ..compare.costs import per_request  # noqa: E402

COLORS = {"prompt": "#1f77b4", "finetune": "#d62728", "combined": "#9467bd"}


def _svg(fig) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    plt.close(fig)
    text = buf.getvalue()
    return text[text.find("<svg"):]  # drop the XML prolog: the SVG is inlined in HTML


def pareto_front(points: list[tuple[float, float, str]]) -> list[str]:
    """Names of points no other point beats on both cost (lower) and quality (higher)."""
    front = []
    for cost, quality, name in points:
        dominated = any(c <= cost and q >= quality and (c, q) != (cost, quality) for c, q, _ in points)
        if not dominated:
            front.append(name)
    return front


def accuracy_vs_cost(c: Comparison, prices) -> str:
    fig, ax = plt.subplots(figsize=(6, 4))
    pts = [(1000 * per_request(a.cost(), prices), a.metric, a.name) for a in c.arms]
    front = pareto_front(pts)
    for a, (x, y, name) in zip(c.arms, pts):
        ax.errorbar(x, y, yerr=[[y - a.ci_low], [a.ci_high - y]], fmt="o", color=COLORS[a.kind], capsize=3)
        ax.annotate(name, (x, y), textcoords="offset points", xytext=(5, 5), fontsize=8)
    fp = sorted((x, y) for x, y, n in pts if n in front)
    if fp:
        ax.step([p[0] for p in fp], [p[1] for p in fp], where="post", color="gray", ls="--", label="Pareto front")
        ax.legend(fontsize=8)
    ax.set_xlabel("$ per 1k requests")
    ax.set_ylabel(c.metric_name)
    ax.set_title("Quality vs cost (error bars: 95% CI)")
    return _svg(fig)


def learning_curves(c: Comparison) -> str:
    fig, axes = plt.subplots(1, max(1, len(c.curves)), figsize=(5 * max(1, len(c.curves)), 3.6), squeeze=False)
    for ax, curve in zip(axes[0], c.curves):
        xs = [p[0] for p in curve.points]
        ax.plot(xs, [p[1] for p in curve.points], "o-", label=curve.arm)
        ax.fill_between(xs, [p[2] for p in curve.points], [p[3] for p in curve.points], alpha=0.2)
        ref = next((a for a in c.arms if a.name == c.crossover.reference), None)
        if ref is not None and curve.axis == "n_train":
            ax.axhline(ref.metric, color="gray", ls="--", label=f"best prompt arm ({ref.name})")
        ax.set_xlabel("k demos" if curve.axis == "shots" else "n training examples")
        ax.set_ylabel(c.metric_name)
        ax.legend(fontsize=8)
    return _svg(fig)


def latency_distributions(c: Comparison) -> str:
    fig, ax = plt.subplots(figsize=(6, 3.6))
    names = [n for n, v in c.latencies.items() if v]
    if names:
        ax.boxplot([c.latencies[n] for n in names], tick_labels=names, orientation="horizontal")
    probed = bool(c.arms) and all(a.probe for a in c.arms)
    ax.set_xlabel("seconds per single request (serving probe)" if probed else
                  "seconds per request (wall time of the evaluation batch that served it)")
    return _svg(fig)


def confusion(labels: list[str], matrix: list[list[int]], title: str) -> str:
    n = len(labels)
    size = min(10, 2 + 0.12 * n)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(matrix, cmap="Blues", aspect="auto")
    if n <= 20:
        ax.set_xticks(range(n + 1), labels + ["other"], rotation=90, fontsize=7)
        ax.set_yticks(range(n), labels, fontsize=7)
        for i, row in enumerate(matrix):
            for j, v in enumerate(row):
                if v:
                    ax.text(j, i, str(v), ha="center", va="center", fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    return _svg(fig)


def break_even_chart(c: Comparison) -> str:
    be = c.break_even
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for name, costs in be.costs.items():
        ax.plot(be.volumes, costs, label=name)
    if be.volume:
        ax.axvline(be.volume, color="gray", ls="--", label=f"break-even {be.volume:,.0f}/month")
    ax.set_xlabel("requests per month")
    ax.set_ylabel("$ per month (one-off spread over the horizon)")
    ax.legend(fontsize=8)
    return _svg(fig)
