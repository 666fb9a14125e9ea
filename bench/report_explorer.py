# python bench/report_explorer.py [--items 10000] [--arms 8] [--runs 3]
"""How fast report.html opens with its item explorer in headless Chromium, for a large experiment.

Builds a comparison of `--arms` arms over `--items` test items in code (random answers, inputs of
~40-600 characters, a raw output per item for a chain-of-thought arm), writes the report, and opens
it in Debian's Chromium `--runs` times. The page reports, from its own clock (`performance.now()`,
ms since navigation start): when the load event ended (HTML parsed, charts laid out, the explorer's
JSON parsed and its first page rendered), and how long filtering to "arms disagree" sorted by score
spread takes, then a search. The baseline is the same report at the demo's size (200 items), opened
in the same way in the same process.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from tuneoff.compare import ArmSummary, build_comparison  # noqa: E402
from tuneoff.config.prices import Constraints, PriceTable  # noqa: E402
from tuneoff.report import write_report  # noqa: E402

PROBE = """<script>
window.addEventListener("load", function () {
  var loaded = performance.now();
  function view(hash) {  // the explorer re-renders synchronously on hashchange
    var t = performance.now();
    history.replaceState(null, "", hash);
    window.dispatchEvent(new HashChangeEvent("hashchange"));
    return performance.now() - t;
  }
  var filterSort = view("#items?f=disagree&sort=spread");
  var search = view("#items?q=rambles%20on%2017");
  var out = document.createElement("pre"); out.id = "timing";
  out.textContent = JSON.stringify({loaded: loaded, filter_sort: filterSort, search: search,
                                    shown: document.getElementById("explorer-count").textContent});
  document.body.appendChild(out);
});
</script>"""


def comparison(n: int, arms: int, seed: int = 0):
    rng = random.Random(seed)
    labels = ["negative", "positive"]
    targets = [rng.choice(labels) for _ in range(n)]
    inputs = [("a review that rambles on %d " % i) * rng.randint(2, 25) for i in range(n)]
    summaries = []
    for j in range(arms):
        kind = "prompt" if j < arms // 2 else "finetune"
        right = [rng.random() < 0.55 + 0.04 * j for _ in range(n)]
        preds = [t if r else labels[1 - labels.index(t)] for t, r in zip(targets, right)]
        outputs = [f"Let me think step by step about this review. It sounds {p}. Answer: {p}" if j == 1 else p
                   for p in preds]
        m = sum(right) / n
        summaries.append(ArmSummary(
            name=f"arm-{j}", kind=kind, model="embedded:x", metric_name="accuracy", metric=m, ci_low=m - 0.01,
            ci_high=m + 0.01, item_ids=[f"test-{i}" for i in range(n)], correct=[float(r) for r in right],
            predictions=preds, targets=targets, labels=labels, inputs=inputs, outputs=outputs,
            flags=[1 if j == 1 and i % 50 == 0 else 0 for i in range(n)], tokens_in=100, tokens_out=1,
            seconds_per_request=0.1, latency_p50=0.1, latency_p95=0.2, setup_seconds=100.0 * j,
            trainable_parameters=1000 if kind != "prompt" else 0, total_parameters=10_000))
    return build_comparison("bench", "sst2", "embedded:x", summaries, PriceTable(), Constraints(monthly_requests=50_000),
                            latencies={a.name: [0.1, 0.2] for a in summaries})


def open_times(html: Path, runs: int, work: Path) -> list[dict]:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    page = work / f"probed-{html.parent.name}.html"
    page.write_text(html.read_text() + PROBE)
    times = []
    for r in range(runs):
        dom = subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1400,900",
                              f"--user-data-dir={work / f'profile-{r}'}", "--dump-dom", page.as_uri()],
                             capture_output=True, text=True, timeout=300).stdout
        times.append(json.loads(re.search(r'<pre id="timing">([^<]*)</pre>', dom).group(1)))
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=10_000)
    ap.add_argument("--arms", type=int, default=8)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tuneoff-explorer-"))
    results = {}
    for label, n in (("baseline (200 items)", 200), (f"{args.items} items", args.items)):
        out = work / str(n)
        html = write_report(comparison(n, args.arms), PriceTable(), out)["html"]
        times = open_times(html, args.runs, work)
        best = min(times, key=lambda t: t["loaded"])
        results[label] = best
        print(f"{label:>22} x {args.arms} arms: {html.stat().st_size / 2**20:5.1f} MiB; load event at "
              f"{best['loaded']:.0f} ms (best of {args.runs}: {[round(t['loaded']) for t in times]}); "
              f"filter 'arms disagree' + sort by spread {best['filter_sort']:.0f} ms; search {best['search']:.0f} ms; "
              f"{best['shown']}")
    base, big = results.values()
    print(f"ratio large / baseline: load {big['loaded'] / base['loaded']:.2f}x")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
