"""Checks an experiment runs on every arm besides its test evaluation: the serving probe (latency and
throughput as a user would see them) and the out-of-domain test set. Plain config dataclasses, read
from YAML with the experiment; the measuring lives in `tuneoff.evaluate.probe` and `tuneoff.experiment`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..errors import TuneoffError
from .task import TaskSpec


@dataclass
class ProbeSpec:
    """The serving probe run after each arm's test evaluation, on the same weights and prompting.

    The evaluation's batch wall times say how fast a whole split is scored, not what one request
    waits: the probe sends `items` test items one at a time (latency per request) and then
    `concurrency` at a time (what a server micro-batching concurrent requests gets: throughput).
    Like a cached call, a stored probe of the same model, arm, items and concurrency is reused by a
    rerun: to measure again (say, on a quieter machine), change `items` or use another store."""

    items: int = 16
    """Test items sent as requests (the first n of the test split); 0 turns the probe off."""
    concurrency: int = 8
    """Requests answered together in the second pass; cost per request (hardware mode) is the machine
    time per request at this concurrency."""

    def __post_init__(self):
        if self.items < 0:
            raise TuneoffError("must be >= 0 (0 turns the probe off)", field="probe.items")
        if self.concurrency < 1:
            raise TuneoffError("must be >= 1", field="probe.concurrency")


@dataclass
class OutOfDomainSpec:
    """A second test file from another domain with the main task's labels, metric and instruction:
    every arm is scored on it with its own prompting and weights (demos still come from the main
    task's training data), and the table shows the drop against the in-domain test split."""

    test: str
    """The out-of-domain test file."""
    name: str = "ood"
    """Short name for the store and the report."""
    input: str | None = None
    """Input column(s)/key(s); default: the main task's."""
    target: str | None = None
    """Target column/key; default: the main task's."""
    label_map: dict | None = None
    """Raw target value -> label name; default: the main task's."""
    n_test: int | None = None
    """Seeded, stratified subsample (None: every item)."""

    def __post_init__(self):
        if self.n_test is not None and self.n_test < 1:
            raise TuneoffError("must be >= 1", field="ood.n_test")

    def task_spec(self, main: TaskSpec) -> TaskSpec:
        """The main task with this test file in place of its splits: same labels, metric, instruction."""
        return dataclasses.replace(main, name=self.name, train=None, dev=None, test=self.test,
                                   input=self.input or main.input, target=self.target or main.target,
                                   label_map=self.label_map if self.label_map is not None else main.label_map,
                                   n_train=None, n_dev=None, n_test=self.n_test)
