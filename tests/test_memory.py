"""Peak resident memory per phase (`tuneoff.memory`): each phase its own peak, nested phases folded into
the outer one, and `tuneoff run` storing them beside the phase timings.

    OMP_NUM_THREADS=1 python -m pytest -q tests/test_memory.py
"""

from __future__ import annotations

import sys

import pytest

from tuneoff.memory import PhasePeaks, peak_mb

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="per-phase peaks need Linux's clear_refs")


def test_each_phase_has_its_own_peak_and_nested_peaks_reach_the_outer_phase():
    peaks = PhasePeaks()
    assert peaks.per_phase
    peaks.begin()  # outer
    peaks.begin()  # inner: 300 MB touched, then freed
    block = bytearray(300 * 2**20)
    block[::4096] = b"x" * len(block[::4096])
    del block
    peaks.end("inner")
    peaks.end("outer")
    peaks.begin()
    peaks.end("after")
    assert peaks.peaks["inner"] >= peaks.peaks["after"] + 250
    assert peaks.peaks["outer"] >= peaks.peaks["inner"]  # the outer phase saw the inner one's peak
    assert peak_mb() > 0


def test_a_run_holds_each_model_only_while_later_units_need_it(tiny_dir, tmp_path, monkeypatch):
    """Curve points train models nobody uses after their unit: each is released before the next loads;
    the fine-tune arm's model stays for the combined arm, and nothing is held at the end."""
    from pathlib import Path

    import yaml
    from typer.testing import CliRunner

    from tuneoff.cli import build_app
    from tuneoff.experiment.context import RunContext

    good = Path(__file__).parent / "fixtures" / "good"
    spec = {"version": 1, "name": "mem", "model": str(tiny_dir), "batch_size": 8,
            "task": {"name": "sst2", "train": str(good / "sst2_dev_60.tsv"), "input": "sentence|content",
                     "target": "label", "label_map": {"0": "negative", "1": "positive"},
                     "labels": ["negative", "positive"], "split_fraction": 0.25, "seed": 1, "n_test": 6},
            "arms": [{"name": "zero", "prompt": {"mode": "score"}},
                     {"name": "lora", "finetune": {"method": "lora", "n_train": 8, "epochs": 1, "batch_size": 8}},
                     {"name": "lora+zero", "finetuned": "lora", "prompt": {"mode": "score"}}],
            "curves": {"finetune_arm": "lora", "n_train": [4, 6]}, "probe": {"items": 0},
            "output": str(tmp_path / "out")}
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(spec))
    held: list[list[str]] = []
    release = RunContext.release

    def spy(self, keep):
        release(self, keep)
        held.append(sorted(Path(s).name.split("-")[0] for s in self.backends))

    monkeypatch.setattr(RunContext, "release", spy)
    result = CliRunner().invoke(build_app(), ["run", str(path), "--store", str(tmp_path / "s.sqlite")])
    assert result.exit_code == 0, result.output
    # units: arm:lora, arm:zero, arm:lora+zero, n_train:4, n_train:6 (the base model goes after arm:zero)
    assert held[:3] == [["lora"], ["lora"], []] and held[-1] == [], held
    assert all(len(h) <= 1 for h in held)
