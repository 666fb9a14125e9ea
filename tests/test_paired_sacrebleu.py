"""The paired bootstrap of a corpus metric is sacreBLEU's own `paired_bs` (Koehn 2004 as Moses does it):
same resamples for the same seed, same p-value, on real DialogSum summaries with three references."""

import json
from pathlib import Path

import numpy as np
import pytest

from tuneoff.metrics import get_metric, paired_bootstrap

ROWS = [json.loads(line) for line in
        (Path(__file__).parent / "fixtures" / "good" / "dialogsum_32.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("name", ["bleu", "chrf", "ter"])
def test_paired_bootstrap_equals_sacrebleus_paired_bs(name):
    from sacrebleu.metrics import BLEU, CHRF, TER
    from sacrebleu.significance import _paired_bs_test

    refs = [[r["summary1"], r["summary2"], r["summary3"]] for r in ROWS]
    streams = [list(s) for s in zip(*refs)]
    base = [r["summary1"].split(".")[0] for r in ROWS]            # a system that writes the first sentence
    system = [" ".join(r["dialogue"].split()[:30]) for r in ROWS]  # one that copies the dialogue's start
    theirs_metric = {"bleu": BLEU, "chrf": CHRF, "ter": TER}[name]()
    bl_stats = theirs_metric._extract_corpus_statistics(base, streams)
    bl_score = theirs_metric._aggregate_and_compute(bl_stats)
    _, result = _paired_bs_test({name: (bl_stats, bl_score)}, "system", system, streams, {name: theirs_metric},
                                n_samples=1000, seed=12345)
    metric = get_metric(name)
    a, b = metric.stats_many(base, refs), metric.stats_many(system, refs)
    difference, p = paired_bootstrap(a, b, metric.total, resamples=1000, seed=12345)
    assert difference == pytest.approx(result[name].score - bl_score.score, abs=1e-9)
    assert p == pytest.approx(result[name].p_value, abs=1e-9)
    assert np.array_equal(a, np.array(bl_stats, dtype=float))  # sacreBLEU's own statistics, multi-reference
