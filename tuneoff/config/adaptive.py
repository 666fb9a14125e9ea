"""`adaptive:` in an experiment: score the arms' test split in interleaved chunks of the same items and
stop each arm once its comparison with the best arm is settled by an anytime-valid confidence
sequence (`tuneoff.compare.sequential`); the scheduling lives in `tuneoff.experiment.adaptive`."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import TuneoffError


@dataclass
class AdaptiveSpec:
    """Adaptive test evaluation. After every arm has trained and tuned, the test split is shuffled
    (seeded) and scored `chunk` items at a time by every arm still running; after each chunk, each
    arm is compared with the leader (the best so far) on their paired items, and an arm whose
    comparison is settled stops. Nothing runs past the whole test split."""

    chunk: int = 32
    """Items every running arm scores between two looks (a multiple of `batch_size` keeps batches full)."""
    alpha: float = 0.05
    """The chance that a comparison is ever wrongly settled, however many looks: at most alpha per pair."""
    min_items: int = 64
    """No arm stops before this many items (the table's CIs need some items whatever the sequence says)."""
    margin: float = 0.0
    """Also stop an arm whose difference from the leader is settled inside (-margin, +margin)
    (e.g. 0.02 = two accuracy points); 0: only a settled difference stops an arm."""
    seed: int = 0
    """Seed of the shuffled item order."""

    def __post_init__(self):
        if self.chunk < 1:
            raise TuneoffError("must be >= 1 (items per arm between looks)", field="adaptive.chunk")
        if not 0 < self.alpha < 1:
            raise TuneoffError("must be between 0 and 1 (exclusive)", field="adaptive.alpha",
                               hint="0.05: a comparison is wrongly settled at most 5% of the time")
        if self.min_items < 1:
            raise TuneoffError("must be >= 1", field="adaptive.min_items")
        if not 0 <= self.margin < 1:
            raise TuneoffError("must be in [0, 1): a difference in the main metric's per-item units",
                               field="adaptive.margin", hint="0 turns equivalence stopping off")
