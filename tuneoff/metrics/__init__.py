"""What a prediction is worth. Each metric is registered once (`registry.METRICS`) with its direction,
range, per-item vs corpus form and binary or continuous item score; everything downstream asks it.

    base.py        Metric, Direction, MetricValue
    labels.py      accuracy, exact_match, numeric; the confusion matrix and macro-F1
    answers.py     what counts as the answer in a reply (cues, numbers, normalisation)
    references.py  sacreBLEU (BLEU, chrF, chrF++, TER) and rouge-score (ROUGE-1/2/L/Lsum)
    embedding.py   MiniLM sentence embeddings and embedding similarity
    registry.py    METRICS, get_metric (did-you-mean), the free-text warning
    bootstrap.py   percentile CIs, the paired bootstrap (as sacreBLEU), repeats x items CIs
    score.py       a run's metric values and per-item statistics
    usage.py       rates, tokens, latency
"""

from .answers import NUMBER, answer_after_cue, as_number, clean_answer, last_number, normalise_text
from .base import Direction, Metric, MetricValue, mean_total
from .bootstrap import bootstrap_ci, paired_bootstrap, repeated_ci
from .embedding import MINILM_MODULE, MiniLM, minilm_dir
from .labels import INVALID, confusion_matrix, label_metrics, macro_f1
from .registry import METRICS, free_text_warning, get_metric
from .score import as_references, item_scores, main_metric, metric_value
from .usage import cost_metrics, rate

__all__ = ["NUMBER", "answer_after_cue", "as_number", "clean_answer", "last_number", "normalise_text", "Direction",
           "Metric", "MetricValue", "mean_total", "bootstrap_ci", "paired_bootstrap", "repeated_ci", "MINILM_MODULE",
           "MiniLM", "minilm_dir", "INVALID", "confusion_matrix", "label_metrics", "macro_f1", "METRICS",
           "free_text_warning", "get_metric", "as_references", "item_scores", "main_metric", "metric_value",
           "cost_metrics", "rate"]
