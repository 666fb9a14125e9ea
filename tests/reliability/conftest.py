"""The reliability suite's switches and its tally.

Fast by default (it runs in the plain `pytest -q`); the long part, and every fuzz test with far more
inputs, run with ONE command:

    OMP_NUM_THREADS=1 .venv/bin/python -m pytest -q -m slow_reliability tests/reliability

At the end of a session the suite prints how many hostile inputs it tried and faults it injected
(RELIABILITY.md quotes these numbers).
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings

from .helpers import TALLY

# deadline=None: the machine is shared and slow; hangs are caught by `no_hang` instead, which is exact
settings.register_profile("fast", max_examples=120, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("slow", max_examples=2500, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _slow(config) -> bool:
    return "slow_reliability" in (config.option.markexpr or "")


def pytest_configure(config):
    settings.load_profile("slow" if _slow(config) else "fast")


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects: the fuzz tests belong to the long run too
def pytest_collection_modifyitems(config, items):
    here = str(config.rootpath / "tests" / "reliability")
    for item in items:
        if not str(item.path).startswith(here):
            continue
        if _slow(config) and item.get_closest_marker("fuzz"):
            item.add_marker(pytest.mark.slow_reliability)
        elif not _slow(config) and item.get_closest_marker("slow_reliability"):
            item.add_marker(pytest.mark.skip(reason="long: pytest -m slow_reliability tests/reliability"))


def pytest_terminal_summary(terminalreporter):
    if TALLY:
        terminalreporter.write_line(f"reliability: {TALLY['inputs']} hostile inputs tried, "
                                    f"{TALLY['faults']} faults injected")
