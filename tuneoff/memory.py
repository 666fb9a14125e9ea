"""Resident memory of this process: the peak over a stretch of work (a phase of `tuneoff run`).

Linux keeps the process's high-water mark of resident memory (VmHWM in /proc/self/status) and lets a
process reset it (writing 5 to /proc/self/clear_refs), so each phase gets its own peak, not the peak
of everything before it. Elsewhere (macOS, or where the reset is refused) the peak is getrusage's
ru_maxrss, which never goes down: a phase then shows the peak so far, and `per_phase` says so.
"""

from __future__ import annotations

import resource
import sys
from pathlib import Path

STATUS, CLEAR_REFS = Path("/proc/self/status"), Path("/proc/self/clear_refs")


def reset_peak() -> bool:
    """Start a new high-water mark at the current resident size; False where the OS does not allow it."""
    try:
        CLEAR_REFS.write_text("5")
        return True
    except OSError:
        return False


def peak_mb() -> float:
    """Peak resident memory since the last `reset_peak` (Linux) or since the process began, in MB."""
    try:
        for line in STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, kB on Linux


class PhasePeaks:
    """Peak RSS per phase; phases may nest (a load inside an arm's evaluation): the inner peak is read
    and folded into the outer one before the mark is reset, so the outer phase's peak stays whole."""

    def __init__(self):
        self.peaks: dict[str, float] = {}
        self.per_phase = reset_peak()
        self._open: list[float] = []  # the peak seen so far by each open phase, innermost last

    def begin(self) -> None:
        if self._open:
            self._open[-1] = max(self._open[-1], peak_mb())
        reset_peak()
        self._open.append(0.0)

    def end(self, name: str) -> None:
        peak = max(self._open.pop(), peak_mb())
        self.peaks[name] = max(self.peaks.get(name, 0.0), round(peak, 1))
        if self._open:
            self._open[-1] = max(self._open[-1], peak)
