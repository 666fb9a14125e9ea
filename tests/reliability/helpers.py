"""Shared by the reliability tests: the tally of inputs and faults, a hang guard, a tiny model."""

from __future__ import annotations

import signal
from collections import Counter
from contextlib import contextmanager

TALLY: Counter[str] = Counter()
"""'inputs' (hostile inputs tried) and 'faults' (kills, failing writes, corrupt files) this session."""


class Hang(Exception):
    """A call ran past its time bound."""


@contextmanager
def no_hang(seconds: int = 20):
    """Fail, rather than wait for ever, when the block runs past `seconds` (main thread, Unix)."""

    def alarm(signum, frame):
        raise Hang(f"still running after {seconds} s")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


# ---- a tiny project on disk: model, data, task, arms, experiment (for the CLI in subprocesses)

import json  # noqa: E402  (kept beside the project helpers that need them)
import os  # noqa: E402
import random  # noqa: E402
import sqlite3  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import yaml  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
WORDS = ["the", "movie", "was", "great", "wonderful", "dull", "boring", "film", "acting", "waste", "time", "what"]


def make_project(root: Path, n: int = 240, experiment: dict | None = None) -> dict[str, Path]:
    """A tiny random Llama, `n` labelled examples, a task, a prompt arm, a LoRA arm, an experiment."""
    from conftest import build_tiny_llama, build_tokenizer

    root.mkdir(parents=True, exist_ok=True)
    tok = build_tokenizer()
    model = root / "tiny-llama"
    build_tiny_llama(tok).save_pretrained(model)
    tok.save_pretrained(model)
    rng = random.Random(0)
    rows = [{"input": " ".join(rng.choices(WORDS, k=8)), "target": rng.choice(["positive", "negative"])}
            for _ in range(n)]
    data = root / "data.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    task = {"name": "tiny", "train": str(data), "labels": ["negative", "positive"],
            "instruction": "positive or negative?", "split_fraction": 0.25, "seed": 1}
    paths = {"root": root, "model": model, "data": data, "task": root / "task.yaml", "prompt": root / "gen.yaml",
             "finetune": root / "lora.yaml", "experiment": root / "exp.yaml", "store": root / "runs.sqlite"}
    paths["task"].write_text(yaml.safe_dump(task))
    paths["prompt"].write_text(yaml.safe_dump({"name": "gen", "mode": "generate", "max_new_tokens": 48}))
    paths["finetune"].write_text(yaml.safe_dump({
        "method": "lora", "epochs": 3, "batch_size": 4, "learning_rate": 1e-3, "save_steps": 3,
        "save_total_limit": 2, "seed": 0, "max_length": 64}))
    exp = experiment or {
        "version": 1, "name": "tiny", "model": str(model), "batch_size": 8, "task": task,
        "arms": [{"name": "zero", "prompt": {"mode": "score"}},
                 {"name": "gen", "prompt": {"mode": "generate", "max_new_tokens": 24}},
                 {"name": "lora", "finetune": {"method": "lora", "n_train": 32, "epochs": 2, "batch_size": 8,
                                               "learning_rate": 1e-3, "save_steps": 2}}],
        "output": str(root / "out")}
    paths["experiment"].write_text(yaml.safe_dump(exp))
    return paths


def cli(args: list[str], **kwargs) -> subprocess.Popen:
    """`tuneoff ARGS` in a subprocess, running this worktree's code."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.Popen([sys.executable, "-c", "from tuneoff.cli import main; main()", *map(str, args)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def query(store: Path, sql: str, *params) -> list[tuple]:
    db = sqlite3.connect(store, timeout=30)
    try:
        return db.execute(sql, params).fetchall()
    finally:
        db.close()


def store_is_sound(store: Path) -> None:
    """PRAGMA integrity_check is ok, no call is stored twice, no foreign key dangles."""
    assert query(store, "PRAGMA integrity_check") == [("ok",)]
    dupes = query(store, "SELECT cache_key, count(*) FROM calls GROUP BY cache_key HAVING count(*) > 1")
    assert dupes == [], f"{len(dupes)} calls stored more than once"
    assert query(store, "PRAGMA foreign_key_check") == []


def count(store: Path, table: str) -> int:
    """Rows in `table`, 0 while the store or its tables do not exist yet (a process is creating them)."""
    try:
        return query(store, f"SELECT count(*) FROM {table}")[0][0] if store.exists() else 0
    except sqlite3.OperationalError:
        return 0
