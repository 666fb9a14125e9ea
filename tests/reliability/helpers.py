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
