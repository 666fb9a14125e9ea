"""The report's charts as inline SVG (matplotlib, Agg): no JavaScript, no network, one file."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")  # headless: never open a window
matplotlib.rcParams["text.parse_math"] = False  # a "$" in an arm or label name is text, not TeX
matplotlib.rcParams["svg.hashsalt"] = "tuneoff"  # stable ids: same data, same file
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import FuncFormatter, NullFormatter  # noqa: E402

from ..compare import Comparison  # noqa: E402
from ..compare.costs import money, per_request  # noqa: E402

COLORS = {"prompt": "#1f77b4", "finetune": "#d62728", "combined": "#9467bd"}
KIND_NAMES = {"prompt": "prompt arm (weights fixed)", "finetune": "fine-tuned", "combined": "fine-tuned + prompt"}
WIDE = 10.0
"""Values spanning more than this factor get a log axis."""


def _svg(fig) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    plt.close(fig)
    text = buf.getvalue()
    return text[text.find("<svg"):]  # drop the XML prolog: the SVG is inlined in HTML


def _wide(values) -> bool:
    positive = [v for v in values if v and v > 0]
    return len(positive) > 1 and max(positive) / min(positive) > WIDE


def _count(v: float) -> str:
    for size, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if v >= size:
            return f"{v / size:g}{unit}"
    return f"{v:g}"


def _axis(ax, axis: str, fmt) -> None:
    """Plain tick labels (text.parse_math is off, so matplotlib's default log labels would show TeX)."""
    target = ax.xaxis if axis == "x" else ax.yaxis
    target.set_major_formatter(FuncFormatter(lambda v, _: fmt(v)))
    target.set_minor_formatter(NullFormatter())


def _money_axis(ax, axis: str = "x") -> None:
    _axis(ax, axis, money)


def pareto_front(points: list[tuple[float, float, str]]) -> list[str]:
    """Names of points no other point beats on both cost (lower) and quality (higher)."""
    front = []
    for cost, quality, name in points:
        dominated = any(c <= cost and q >= quality and (c, q) != (cost, quality) for c, q, _ in points)
        if not dominated:
            front.append(name)
    return front


def accuracy_vs_cost(c: Comparison, prices) -> str:
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    pts = [(1000 * per_request(a.cost(), prices), a.metric, a.name) for a in c.arms]
    front = pareto_front(pts)
    for a, (x, y, name) in zip(c.arms, pts):
        ax.errorbar(x, y, yerr=[[y - a.ci_low], [a.ci_high - y]], fmt="o", color=COLORS[a.kind], capsize=3,
                    alpha=0.85, markersize=6)
    _label_points(ax, pts)
    xs = [p[0] for p in pts]
    if _wide(xs):
        ax.set_xscale("log")
    elif xs and max(xs) - min(xs) <= 0.02 * max(xs):  # one cost for all: a readable span around it
        mid = max(xs) or 1e-9
        ax.set_xlim(mid * 0.5, mid * 1.5)
    fp = sorted((x, y) for x, y, n in pts if n in front)
    handles = [Line2D([], [], marker="o", ls="", color=COLORS[k], label=KIND_NAMES[k])
               for k in COLORS if k in {a.kind for a in c.arms}]
    if fp:
        (line,) = ax.step([p[0] for p in fp], [p[1] for p in fp], where="post", color="gray", ls="--",
                          label="Pareto front")
        handles.append(line)
    ax.legend(handles=handles, fontsize=8, loc="best")
    _money_axis(ax)
    ax.set_xlabel("$ per 1k requests" + (" (log scale)" if ax.get_xscale() == "log" else ""))
    ax.set_ylabel(c.metric_name)
    ax.set_title("Quality vs cost (error bars: 95% CI)")
    return _svg(fig)


def _label_points(ax, pts: list[tuple[float, float, str]]) -> None:
    """Arm names beside their points; names of points at (nearly) the same cost are spread vertically
    so none is printed over another, each joined to its point by a thin line."""
    ys = [p[1] for p in pts]
    gap = max(0.07 * (max(ys) - min(ys) if len(ys) > 1 and max(ys) > min(ys) else 1.0), 1e-9)
    groups: dict[float, list[tuple[float, float, str]]] = {}
    for x, y, name in pts:
        key = next((k for k in groups if abs(k - x) <= 0.02 * max(abs(k), abs(x), 1e-12)), x)
        groups.setdefault(key, []).append((x, y, name))
    for group in groups.values():
        last = float("-inf")
        for x, y, name in sorted(group, key=lambda p: p[1]):
            label_y = max(y, last + gap)
            last = label_y
            ax.annotate(name, (x, y), xytext=(12, label_y), textcoords=("offset points", "data"), fontsize=8,
                        va="center", arrowprops=None if label_y == y else {"arrowstyle": "-", "color": "#999", "lw": 0.6})


def learning_curves(c: Comparison) -> str:
    fig, axes = plt.subplots(1, max(1, len(c.curves)), figsize=(5 * max(1, len(c.curves)), 3.6), squeeze=False)
    for ax, curve in zip(axes[0], c.curves):
        xs = [p[0] for p in curve.points]
        ax.plot(xs, [p[1] for p in curve.points], "o-", label=curve.arm)
        ax.fill_between(xs, [p[2] for p in curve.points], [p[3] for p in curve.points], alpha=0.2)
        ref = next((a for a in c.arms if a.name == c.crossover.reference), None)
        if ref is not None and curve.axis == "n_train":
            ax.axhline(ref.metric, color="gray", ls="--", label=f"best prompt arm ({ref.name})")
        if curve.axis == "n_train" and _wide(xs):
            ax.set_xscale("log")
            _axis(ax, "x", _count)
        ax.set_xlabel("k demos" if curve.axis == "shots" else "n training examples")
        ax.set_ylabel(c.metric_name)
        ax.legend(fontsize=8)
    return _svg(fig)


def latency_distributions(c: Comparison) -> str:
    names = [n for n, v in c.latencies.items() if v]
    fig, ax = plt.subplots(figsize=(6.4, max(2.4, 0.9 + 0.38 * len(names))))
    if names:
        ax.boxplot([c.latencies[n] for n in names], tick_labels=names, orientation="horizontal")
        if _wide([v for n in names for v in c.latencies[n]]):
            ax.set_xscale("log")
            _axis(ax, "x", lambda v: f"{v:g}")
    probed = bool(c.arms) and all(a.probe for a in c.arms)
    ax.set_xlabel(("seconds per single request (serving probe)" if probed else
                   "seconds per request (wall time of the evaluation batch that served it)")
                  + (", log scale" if ax.get_xscale() == "log" else ""))
    return _svg(fig)


TOP_CLASSES = 16
"""Classes a confusion matrix shows by name; with more, those most often confused."""


def confusion_view(labels: list[str], matrix: list[list[int]], top: int = TOP_CLASSES):
    """(row labels, column labels, cells, note): the classes involved in the most confusions when there
    are more than `top`; the "other" column (answers outside the labels) only when some answer is."""
    n = len(labels)
    other = any(len(row) > n and row[n] for row in matrix)
    keep = list(range(n))
    note = ""
    if n > top:
        off = [sum(matrix[i][j] for j in range(n) if j != i) + sum(matrix[j][i] for j in range(n) if j != i)
               + (matrix[i][n] if other else 0) for i in range(n)]
        keep = sorted(sorted(range(n), key=lambda i: -off[i])[:top])
        note = f"the {top} of {n} classes most often confused"
    cols = keep + ([n] if other else [])
    cells = [[matrix[i][j] for j in cols] for i in keep]
    return [labels[i] for i in keep], [labels[j] if j < n else "other" for j in cols], cells, note


def confusion(labels: list[str], matrix: list[list[int]], title: str) -> str:
    rows, cols, cells, note = confusion_view(labels, matrix)
    size = min(9.0, 2.8 + 0.42 * max(len(rows), len(cols)))
    fig, ax = plt.subplots(figsize=(size + 0.8, size))
    peak = max((v for r in cells for v in r), default=0) or 1
    ax.imshow(cells, cmap="Blues", vmin=0, vmax=peak, aspect="auto")
    short = [lab if len(lab) <= 30 else lab[:28] + "…" for lab in cols]
    ax.set_xticks(range(len(cols)), short, rotation=45 if max(map(len, short), default=0) > 6 else 0,
                  ha="right" if max(map(len, short), default=0) > 6 else "center", fontsize=9)
    ax.set_yticks(range(len(rows)), [lab if len(lab) <= 36 else lab[:34] + "…" for lab in rows], fontsize=9)
    fontsize = 11 if len(cols) <= 6 else 9 if len(cols) <= 12 else 8
    for i, row in enumerate(cells):
        for j, v in enumerate(row):
            if v:  # white on the dark half of the colour map, near-black on the light half
                ax.text(j, i, str(v), ha="center", va="center", fontsize=fontsize,
                        color="white" if v > 0.55 * peak else "#111")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title + (f"\n({note})" if note else ""), fontsize=10)
    return _svg(fig)


def break_even_chart(c: Comparison) -> str:
    be = c.break_even
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    for name, costs in be.costs.items():
        ax.plot(be.volumes, costs, label=name)
    if be.volume:
        ax.axvline(be.volume, color="gray", ls="--", label=f"break-even {be.volume:,.0f}/month")
    expected = getattr(be, "expected", None)
    if expected:
        ax.axvline(expected, color="#2a7a2a", ls=":", lw=2, label=f"your volume {expected:,.0f}/month")
    positive = [v for v in be.volumes if v > 0]
    if positive and max(positive) / min(positive) > 100:
        ax.set_xscale("log")
    _axis(ax, "x", _count)
    ys = [y for costs in be.costs.values() for y in costs]
    if _wide(ys):
        ax.set_yscale("log")
    _money_axis(ax, "y")
    ax.set_xlabel("requests per month" + (" (log scale)" if ax.get_xscale() == "log" else ""))
    ax.set_ylabel("$ per month (one-off spread over the horizon)")
    ax.legend(fontsize=8)
    return _svg(fig)
