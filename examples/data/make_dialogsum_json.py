# python examples/data/make_dialogsum_json.py [../shared/data] — rewrites examples/data/dialogsum-json/.
"""DialogSum as a structured-output task: dialogue -> {"topic": ..., "summary": ...} (a JSON string in the
`answer` column; `summary` alone for the judged free-text example). Seeded picks of short dialogues (at most 120 words, so the CPU example runs in minutes);
the test target uses the first annotator's topic and summary (topic1, summary1)."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

HERE = Path(__file__).parent
OUT = HERE / "dialogsum-json"
SIZES = {"train.jsonl": 200, "test.jsonl": 40}
MAX_WORDS = 120


def rows(path: Path, test: bool) -> list[dict]:
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        r = json.loads(line)
        if len(r["dialogue"].split()) > MAX_WORDS:
            continue
        topic, summary = (r["topic1"], r["summary1"]) if test else (r["topic"], r["summary"])
        out.append({"id": r["fname"], "dialogue": r["dialogue"], "summary": summary,
                    "answer": json.dumps({"topic": topic, "summary": summary}, ensure_ascii=False)})
    return out


def main(source: Path) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for name, n in SIZES.items():
        picked = rows(source / "dialogsum" / name, test=name.startswith("test"))
        random.Random(0).shuffle(picked)
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in picked[:n])
        (OUT / name).write_text(text, encoding="utf-8")
        print(f"{OUT / name}: {min(n, len(picked))} of {len(picked)} short dialogues")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE.parents[2] / "shared" / "data")
