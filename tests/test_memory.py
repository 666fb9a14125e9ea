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
