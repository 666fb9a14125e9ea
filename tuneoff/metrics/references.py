"""Reference metrics for free text, computed by the field's own libraries: sacreBLEU (BLEU, chrF,
chrF++, TER) and rouge-score (ROUGE-1/2/L/Lsum with Porter stemming).

sacreBLEU metrics are corpus metrics: each item's sufficient statistics (n-gram or edit counts, best
over its references) come from sacreBLEU's `_extract_corpus_statistics`, and the corpus value from
its `_compute_score_from_stats` on their sum, the route sacreBLEU's own paired bootstrap takes; so
the value, its CI and the paired test are one statistic. Several references per item use each
library's definition: sacreBLEU's multi-reference counts (BLEU: clipped by the maximum count over
references, closest reference length; chrF: the best-scoring reference; TER: fewest edits over the
average reference length), rouge-score's `score_multi` (the best F-measure over references).
The libraries are imported on first use: reading a config never pays for them.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Sequence

import numpy as np

from .base import Direction, Metric, mean_total, per_item_loop


@lru_cache(maxsize=None)
def sacrebleu_metric(name: str, sentence: bool = False):
    """A sacreBLEU metric object by our name; `sentence`: the smoothed form for one item's own score."""
    from sacrebleu.metrics import BLEU, CHRF, TER

    if name == "bleu":
        return BLEU(effective_order=True) if sentence else BLEU()
    if name == "chrf":
        return CHRF()
    if name == "chrf++":
        return CHRF(word_order=2)
    return TER()


def sacrebleu_stats(name: str, prediction: str | None, references: Sequence[str]) -> np.ndarray:
    """One item's sufficient statistics, best over its references, as sacreBLEU extracts them."""
    metric = sacrebleu_metric(name)
    stats = metric._extract_corpus_statistics([prediction or ""], [[r] for r in references])
    return np.asarray(stats[0], dtype=float)


def sacrebleu_many(name: str, predictions: Sequence[str | None], references: Sequence[Sequence[str]]) -> np.ndarray:
    """[items, d] statistics in one sacreBLEU call; a short reference list is padded with None, which
    sacreBLEU reads as "this item has fewer references"."""
    depth = max((len(r) for r in references), default=1)
    streams = [[refs[k] if k < len(refs) else None for refs in references] for k in range(depth)]
    stats = sacrebleu_metric(name)._extract_corpus_statistics([p or "" for p in predictions], streams)
    return np.asarray(stats, dtype=float).reshape(len(predictions), -1)


def _score(name: str, sentence: bool = False):
    metric = sacrebleu_metric(name, sentence)
    # sacreBLEU sums statistics as float32 in its bootstrap; the score depends on counts only
    return lambda sums: float(metric._compute_score_from_stats(list(sums)).score)


def _sacrebleu(name: str, description: str, direction: Direction = Direction.HIGHER,
               high: float | None = 100.0) -> Metric:
    return Metric(name, description, lambda p, refs: sacrebleu_stats(name, p, refs),
                  per_item_loop(_score(name)), direction=direction, low=0.0, high=high, corpus=True,
                  item_score=_score(name, sentence=True),
                  many=lambda ps, rs: sacrebleu_many(name, ps, rs))


ROUGE_TYPES = {"rouge1": "ROUGE-1 F (unigrams)", "rouge2": "ROUGE-2 F (bigrams)",
               "rougeL": "ROUGE-L F (longest common subsequence)",
               "rougeLsum": "ROUGE-Lsum F (summary-level LCS over newline-separated sentences)"}


@lru_cache(maxsize=1)
def rouge_scorer():
    from rouge_score.rouge_scorer import RougeScorer

    return RougeScorer(list(ROUGE_TYPES), use_stemmer=True)


def rouge_stats(kind: str, prediction: str | None, references: Sequence[str]) -> np.ndarray:
    """[100 x F-measure], best over the references (rouge-score's `score_multi`)."""
    scores = rouge_scorer().score_multi(list(references), prediction or "")
    return np.array([100.0 * scores[kind].fmeasure])


def _rouge(kind: str) -> Metric:
    return Metric(kind, f"{ROUGE_TYPES[kind]}, rouge-score with Porter stemming, best over references, 0-100",
                  lambda p, refs: rouge_stats(kind, p, refs), mean_total, low=0.0, high=100.0)


REFERENCE_METRICS = [
    _sacrebleu("bleu", "corpus BLEU (sacreBLEU 13a, 4-grams, multi-reference), 0-100"),
    _sacrebleu("chrf", "corpus chrF (sacreBLEU: character 6-grams, beta 2), 0-100"),
    _sacrebleu("chrf++", "corpus chrF++ (sacreBLEU: chrF plus word bigrams), 0-100"),
    _sacrebleu("ter", "corpus TER, edits per reference word x 100 (sacreBLEU), lower is better",
               direction=Direction.LOWER, high=None),
    *[_rouge(kind) for kind in ROUGE_TYPES],
]
