# python examples/data/make_slices.py [../shared/data] — rewrites the committed data slices below.
"""Small, seeded, stratified slices of the shared datasets, committed so the examples and the demo
run on a machine that has only this repository. Rows are copied verbatim from the source files."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

from tuneoff.data import ColumnMapping, load_examples, stratified_order

HERE = Path(__file__).parent
SLICES = [  # (source, destination, rows, mapping)
    ("sst2/train.tsv", "sst2/train.tsv", 2000, ColumnMapping("sentence", "label")),
    ("sst2/dev.tsv", "sst2/dev.tsv", None, ColumnMapping("content", "label")),
    ("banking77/train.csv", "banking77/train.csv", 1540, ColumnMapping("text", "category")),
    ("banking77/test.csv", "banking77/test.csv", 770, ColumnMapping("text", "category")),
    ("gsm8k/train.jsonl", "gsm8k/train.jsonl", 300, ColumnMapping("question", "answer")),
    ("gsm8k/test.jsonl", "gsm8k/test.jsonl", 100, ColumnMapping("question", "answer")),
    ("dialogsum/train.jsonl", "dialogsum/train.jsonl", 300, ColumnMapping("dialogue", "summary")),
    ("dialogsum/test.jsonl", "dialogsum/test.jsonl", 100, ColumnMapping("dialogue", "summary1,summary2,summary3")),
]


def _records(path: Path) -> dict[int, str]:
    """Start line -> raw text of each record; a quoted CSV field may span several lines."""
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    if path.suffix == ".jsonl":
        return {n: line for n, line in enumerate(lines, 1)}
    reader = csv.reader(lines, delimiter="\t" if path.suffix == ".tsv" else ",")
    out, start = {}, 1
    for _ in reader:
        out[start] = "".join(lines[start - 1:reader.line_num])
        start = reader.line_num + 1
    return out


def main(source: Path) -> None:
    for src, dst, rows, mapping in SLICES:
        records = _records(source / src)
        examples = load_examples(source / src, mapping).examples
        keep = sorted(examples[i].line for i in stratified_order(examples, seed=0)[:rows or len(examples)])
        header = [records[1]] if src.endswith((".tsv", ".csv")) else []
        out = HERE / dst
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("".join(header + [records[n] for n in keep]), encoding="utf-8")
        print(f"{dst}: {len(keep)} of {len(examples)} rows")
    cats = json.loads((source / "banking77/categories.json").read_text())
    (HERE / "banking77/categories.json").write_text(json.dumps(cats, indent=1) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else HERE.parents[2] / "shared" / "data"))
