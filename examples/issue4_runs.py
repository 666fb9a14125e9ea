# TUNEOFF_HOME=/tmp/th python examples/issue4_runs.py --out /tmp/issue4 --threads 1 > /tmp/issue4.log 2>&1
"""Issue 4 check on the embedded SmolLM2-135M-Instruct: LoRA, layer-freeze and full fine-tuning on
SST-2 (256 train examples, 2 epochs) and Banking77 (10 per intent = 770, 1 epoch), each scored
against the zero-shot base model by label log-likelihood (argmax of log p(label + end-of-turn |
prompt) over the label set) on 200 SST-2 dev / 300 Banking77 test items: accuracy with a Wilson 95%
interval, and the paired difference to zero-shot with a bootstrap 95% interval (same items).

Writes `<out>/results.json` and a table to stdout; the fine-tunes land in `<out>/<task>-<method>` and
the training records in `<out>/runs.sqlite`.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import time
from pathlib import Path

import torch

from tuneoff.data import ColumnMapping, Example, load_dataset, subsample
from tuneoff.finetune import FinetuneArm, default_formatter, run_finetune
from tuneoff.finetune.outputs import is_finished
from tuneoff.models import ModelSpec, load_model
from tuneoff.store import Store
from tuneoff.task import TaskData, TaskSpec

DATA = Path("/work/shared/data")
MODEL = "embedded:smollm2-135m-instruct"
SST2_INSTRUCTION = "Classify the sentiment of this movie review as positive or negative. Answer with one word."
BANKING_INSTRUCTION = "Classify the intent of this banking customer message. Answer with the intent label only."


def sst2_task(n_train: int, n_eval: int) -> TaskData:
    labels = {"0": "negative", "1": "positive"}
    train = load_dataset(DATA / "sst2/train.tsv", ColumnMapping("sentence", "label", labels))
    dev = load_dataset(DATA / "sst2/dev.tsv", ColumnMapping("content", "label", labels))
    spec = TaskSpec(name="sst2", train=str(DATA / "sst2/train.tsv"), instruction=SST2_INSTRUCTION)
    return TaskData(spec, subsample(train, n_train, 0), [], subsample(dev, n_eval, 0), list(labels.values()))


def banking_task(per_class: int, n_eval: int) -> TaskData:
    labels = json.loads((DATA / "banking77/categories.json").read_text())
    mapping = ColumnMapping("text", "category")
    train = load_dataset(DATA / "banking77/train.csv", mapping, labels)
    test = load_dataset(DATA / "banking77/test.csv", mapping, labels)
    by_label: dict[str, list[Example]] = {}
    for ex in train:
        by_label.setdefault(ex.target, []).append(ex)
    balanced = [ex for label in labels for ex in subsample(by_label[label], per_class, 0)]
    spec = TaskSpec(name="banking77", train=str(DATA / "banking77/train.csv"), instruction=BANKING_INSTRUCTION)
    return TaskData(spec, balanced, [], subsample(test, n_eval, 0), labels)


@torch.no_grad()
def label_scores(model, tokenizer, prompt: list[dict], labels: list[str], chunk: int = 16) -> list[float]:
    """log p(label + end-of-turn | prompt) for every label. The prompt runs once and its KV cache is
    shared; continuations run in length-sorted chunks and the vocabulary projection only where a
    label token is predicted (77 Banking77 labels would otherwise cost 77 prompt passes and 2.3x
    padding). Llama-family models only (`model.model` + `model.lm_head`), which SmolLM2 is."""
    from tuneoff.finetune.collate import split_prompt_completion

    head = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    p = tokenizer(head, add_special_tokens=False)["input_ids"]
    # the newline after the end-of-turn token is fixed by the template: it tells labels nothing
    conts = [tokenizer(split_prompt_completion(tokenizer, prompt, lab)[1].rstrip(), add_special_tokens=False)
             ["input_ids"] for lab in labels]
    out = model.model(input_ids=torch.tensor([p]), use_cache=True)
    first = torch.log_softmax(model.lm_head(out.last_hidden_state[0, -1]).float(), -1)
    scores = [first[c[0]].item() for c in conts]
    order = sorted((i for i in range(len(conts)) if len(conts[i]) > 1), key=lambda i: len(conts[i]))
    for start in range(0, len(order), chunk):
        group = [conts[i] for i in order[start:start + chunk]]
        width = max(len(c) for c in group) - 1  # feed c[:-1]: each fed token predicts the next
        cache = copy.deepcopy(out.past_key_values)
        cache.batch_repeat_interleave(len(group))
        # right padding: a causal model's real tokens never see the pads that follow them
        ids = torch.tensor([c[:-1] + [c[0]] * (width - len(c) + 1) for c in group])
        pos = torch.arange(len(p), len(p) + width).expand(len(group), -1)
        mask = torch.ones(len(group), len(p) + width, dtype=torch.long)
        hidden = model.model(input_ids=ids, past_key_values=cache, attention_mask=mask, position_ids=pos
                             ).last_hidden_state
        rows = [(r, j) for r, c in enumerate(group) for j in range(len(c) - 1)]
        logp = torch.log_softmax(model.lm_head(hidden[[r for r, _ in rows], [j for _, j in rows]]).float(), -1)
        targets = torch.tensor([group[r][j + 1] for r, j in rows])
        picked = logp.gather(-1, targets[:, None])[:, 0].tolist()
        for (r, _), value in zip(rows, picked):
            scores[order[start + r]] += value
    return scores


def accuracy(model_spec: str, task: TaskData) -> dict:
    model, tokenizer, _ = load_model(ModelSpec(model_spec, device="cpu"))
    model.eval()
    formatter = default_formatter(task.spec.instruction)
    start, items = time.perf_counter(), []
    for i, ex in enumerate(task.test):
        if i and i % 50 == 0:
            print(f"  scoring {model_spec}: {i}/{len(task.test)} items, {time.perf_counter() - start:.0f} s", flush=True)
        scores = label_scores(model, tokenizer, formatter(ex), task.labels)
        items.append(int(task.labels[max(range(len(scores)), key=scores.__getitem__)] == ex.target))
    n, correct = len(items), sum(items)
    low, high = wilson(correct, n)
    return {"accuracy": correct / n, "ci95": [low, high], "n": n, "eval_seconds": time.perf_counter() - start,
            "items": items}


def paired_diff(a: list[int], b: list[int], resamples: int = 10_000) -> tuple[float, float, float]:
    """Accuracy of b minus a on the same items, with a paired bootstrap 95% interval."""
    x = torch.tensor(b, dtype=torch.float) - torch.tensor(a, dtype=torch.float)
    g = torch.Generator().manual_seed(0)
    means = x[torch.randint(len(x), (resamples, len(x)), generator=g)].mean(1)
    return x.mean().item(), means.quantile(0.025).item(), means.quantile(0.975).item()


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def arms(dtype: str, epochs: int) -> dict[str, FinetuneArm]:
    """The default arm of each method; only precision and epochs vary."""
    return {m: FinetuneArm(name=m, method=m, dtype=dtype, epochs=epochs) for m in ("lora", "freeze", "full")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("/tmp/issue4"))
    ap.add_argument("--tasks", default="sst2,banking77")
    ap.add_argument("--methods", default="lora,freeze,full")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--threads", type=int, default=None,
                    help="torch CPU threads; on a machine shared with other jobs, 1 avoids OpenMP spin contention")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    store = Store(args.out / "runs.sqlite")
    # (task, epochs): SST-2 with the default two epochs; Banking77's 770 examples once (training time)
    tasks = {"sst2": (lambda: sst2_task(256, 200), 2), "banking77": (lambda: banking_task(10, 300), 1)}
    results = json.loads((args.out / "results.json").read_text()) if (args.out / "results.json").exists() else {}
    for name in args.tasks.split(","):
        task, epochs = tasks[name][0](), tasks[name][1]
        row = results.setdefault(name, {})
        if "zero-shot" not in row:
            row["zero-shot"] = accuracy(MODEL, task)
            _report(args.out, results, name, "zero-shot")
        for method in args.methods.split(","):
            key = method if args.dtype == "float32" else f"{method}-{args.dtype}"
            if key in row:
                continue
            out = args.out / f"{name}-{key}"
            if is_finished(out):  # trained before: score it again without retraining
                meta = json.loads((out / "tuneoff.json").read_text())
                stats, run_id = meta["stats"], meta["run_id"]
            else:
                result = run_finetune(task, arms(args.dtype, epochs)[method], MODEL, out, store, resume=out.exists())
                stats, run_id = result.stats.as_dict(), result.run_id
            row[key] = {**accuracy(str(out), task), "train": stats, "run_id": run_id}
            if "items" in row["zero-shot"]:
                row[key]["diff_vs_zero_shot"] = paired_diff(row["zero-shot"]["items"], row[key]["items"])
            _report(args.out, results, name, key)


def _report(out: Path, results: dict, task: str, key: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    r = results[task][key]
    t = r.get("train", {})
    extra = (f" train {t['seconds']:.0f} s, {t['tokens_per_second']:.0f} tok/s, "
             f"{t['trainable_parameters']:,} trainable, final loss {t['final_loss']:.3f}") if t else ""
    diff = " diff vs zero-shot {:+.3f} [{:+.3f}, {:+.3f}]".format(*r["diff_vs_zero_shot"]) \
        if "diff_vs_zero_shot" in r else ""
    print(f"{task:10s} {key:16s} acc {r['accuracy']:.3f} [{r['ci95'][0]:.3f}, {r['ci95'][1]:.3f}] "
          f"n={r['n']}{diff}{extra}", flush=True)


if __name__ == "__main__":
    main()
