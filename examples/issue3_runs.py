# TUNEOFF_HOME=/tmp/th nohup python examples/issue3_runs.py --out /tmp/issue3 --threads 1 > /tmp/issue3.log 2>&1 &
"""Issue 3 check: the prompt-engineering arms end to end on the embedded SmolLM2-135M-Instruct.

SST-2 (200 dev items) and Banking77 (300 test items): zero-shot, few-shot (k=8, most similar demos),
chain-of-thought, role and optimised arms; label arms in score mode (label log-likelihood), the
chain-of-thought arm generating. GSM8K (20 test items): chain-of-thought with numeric answers.
Every call, prediction and metric goes to `<out>/runs.sqlite`; the table is printed at the end and
written to `<out>/results.json`. Re-running reuses the stored calls (and resumes a killed run).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from tuneoff.consistency import consistency
from tuneoff.data import Example, subsample
from tuneoff.evaluate import evaluate
from tuneoff.models import ModelSpec, load_backend
from tuneoff.prompting import OptimiseSpec, PromptArm, TaskContext, optimise
from tuneoff.store import Store
from tuneoff.task import TaskSpec, load_task

DATA = Path("/work/shared/data")
MODEL = "embedded:smollm2-135m-instruct"
CRITIC = "You are a seasoned film critic. You judge whether a review is positive or negative."
AGENT = "You are a customer-support agent at a digital bank who routes each message to the right intent."


def sst2() -> tuple[TaskContext, list[Example], list[Example], list[Example]]:
    """(task, train pool, optimiser dev, eval items): 200 dev items reported, 30 others to optimise on."""
    data = load_task(TaskSpec(name="sst2", train=str(DATA / "sst2/train.tsv"), dev=str(DATA / "sst2/dev.tsv"),
                              input="sentence|content", target="label", label_map={"0": "negative", "1": "positive"},
                              labels=["negative", "positive"], n_train=2000,
                              instruction="Is the sentiment of this movie review positive or negative?"))
    items = subsample(data.dev, 200, seed=0)
    rest = [ex for ex in data.dev if ex not in items]
    return TaskContext.of(data), data.train, subsample(rest, 30, seed=1), items


def banking77() -> tuple[TaskContext, list[Example], list[Example], list[Example]]:
    data = load_task(TaskSpec(name="banking77", train=str(DATA / "banking77/train.csv"),
                              test=str(DATA / "banking77/test.csv"), input="text", target="category",
                              labels=str(DATA / "banking77/categories.json"), n_train=2000, n_dev=100, n_test=300,
                              instruction="Which banking intent does this customer message express?"))
    return TaskContext.of(data), data.train, data.dev, data.test


def gsm8k() -> tuple[TaskContext, list[Example], list[Example], list[Example]]:
    data = load_task(TaskSpec(name="gsm8k", train=str(DATA / "gsm8k/train.jsonl"), test=str(DATA / "gsm8k/test.jsonl"),
                              input="question", target="answer", metric="numeric", n_train=500, n_test=20,
                              instruction="Solve the math word problem."))
    return TaskContext.of(data), data.train, data.dev, data.test


def label_arms(system: str, opt: OptimiseSpec) -> list[PromptArm]:
    return [PromptArm(name="zero-shot", mode="score"),
            PromptArm(name="few-shot-k8-similar", mode="score", shots=8, demo_selection="similar"),
            PromptArm(name="chain-of-thought", chain_of_thought=True, max_new_tokens=64),
            PromptArm(name="role", mode="score", system=system),
            PromptArm(name="optimised", mode="score", optimise=opt)]


def row(task: str, arm: PromptArm, result, wall: float, extra: dict | None = None) -> dict:
    m = result.metrics
    main = result.main
    return {"task": task, "arm": arm.name, "mode": arm.mode, "run_id": result.run_id, "metric": main.name,
            "value": main.value, "ci": [main.ci_low, main.ci_high], "n": int(m["n_items"].value),
            "macro_f1": m["macro_f1"].value if "macro_f1" in m else None,
            "tokens_in": m["tokens_in_mean"].value, "tokens_out": m["tokens_out_mean"].value,
            "latency_p50": m["latency_p50"].value, "latency_p95": m["latency_p95"].value,
            "violations": m["format_violation_rate"].value,
            "hallucinated": m["hallucinated_label_rate"].value if "hallucinated_label_rate" in m else None,
            "hits": result.cache_hits, "misses": result.cache_misses, "wall_s": wall, **(extra or {})}


def run_task(name, loader, arms, backend, store, results) -> None:
    ctx, pool, dev, items = loader()
    ctx = TaskContext(name=ctx.name, labels=ctx.labels, metric=ctx.metric, instruction=ctx.instruction,
                      pool=tuple(pool))
    print(f"\n== {name}: {len(items)} items, pool {len(pool)}, optimiser dev {len(dev)}", flush=True)
    for arm in arms:
        began, extra = time.perf_counter(), {}
        if arm.optimise is not None:
            found = optimise(backend, arm, pool, dev, ctx, store=store)
            extra = {"optimise_calls": found.calls_spent, "optimise_budget": found.budget,
                     "optimise_dev": found.dev_score, "optimise_s": found.seconds,
                     "chosen_instruction": found.arm.instruction, "chosen_demos": len(found.arm.demos or [])}
            print(f"   optimiser: {found.calls_spent}/{found.budget} calls, dev {found.dev_score:.3f}, "
                  f"{len(found.trials)} candidates, {found.seconds:.0f} s", flush=True)
            arm = found.arm
        result = evaluate(backend, arm, items, ctx, store=store, split="eval")
        results.append(row(name, arm, result, time.perf_counter() - began, extra))
        print(format_row(results[-1]), flush=True)


def format_row(r: dict) -> str:
    ci = f"[{r['ci'][0]:.3f}, {r['ci'][1]:.3f}]"
    hall = "-" if r["hallucinated"] is None else f"{r['hallucinated']:.1%}"
    return (f"{r['task']:<10} {r['arm']:<20} {r['metric']:<8} {r['value']:.3f} {ci:<16} n={r['n']:<4} "
            f"tok {r['tokens_in']:7.1f}/{r['tokens_out']:5.1f}  lat p50 {r['latency_p50']:6.2f}s p95 "
            f"{r['latency_p95']:6.2f}s  viol {r['violations']:.1%} hall {hall}  cache {r['hits']}/{r['misses']}  "
            f"wall {r['wall_s']:7.1f}s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("/tmp/issue3"))
    ap.add_argument("--tasks", default="sst2,banking77,gsm8k")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch CPU threads; on a machine shared with other jobs, 1 avoids OpenMP spin contention")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    store = Store(args.out / "runs.sqlite")
    backend = load_backend(ModelSpec(MODEL))
    results: list[dict] = []
    plans = {
        "sst2": (sst2, label_arms(CRITIC, OptimiseSpec(budget=180, dev_items=30, paraphrases=2, bootstrap=16,
                                                       demo_sets=2, shots=4))),
        "banking77": (banking77, label_arms(AGENT, OptimiseSpec(budget=150, dev_items=24, paraphrases=2,
                                                               bootstrap=16, demo_sets=2, shots=4))),
        "gsm8k": (gsm8k, [PromptArm(name="chain-of-thought", chain_of_thought=True, max_new_tokens=256)]),
    }
    for name in args.tasks.split(","):
        loader, arms = plans[name]
        run_task(name, loader, arms, backend, store, results)
        (args.out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    if "sst2" in args.tasks:
        ctx, pool, _, items = sst2()
        began = time.perf_counter()
        check = consistency(backend, PromptArm(name="zero-shot", mode="score"), items, ctx, store=store, split="eval",
                            paraphrases=["Does this movie review express a positive or a negative opinion?",
                                         "Classify the review's sentiment: positive or negative."])
        print(f"\nconsistency sst2 zero-shot: agreement {check.agreement:.3f}, accuracy mean {check.mean:.3f} "
              f"std {check.std:.3f} range [{check.low:.3f}, {check.high:.3f}], {time.perf_counter() - began:.0f} s")
        results.append({"task": "sst2", "arm": "zero-shot consistency", "agreement": check.agreement,
                        "mean": check.mean, "std": check.std, "range": [check.low, check.high]})
    (args.out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    print("\n== all runs")
    for r in results:
        if "value" in r:
            print(format_row(r))


if __name__ == "__main__":
    main()
