"""Pairwise figures the table, the break-even and the verdict all need: each paired test and each
payback is computed once per pair of arms and handed to every reader."""

from __future__ import annotations

from ..config.prices import PriceTable
from .arms import ArmSummary
from .costs import Payback, payback
from .evidence import repeated, seeded_test
from .sequential import confidence_sequence
from .stats import PairedTest, paired_scores, paired_test


class PairStats:
    """Memoised `paired_test` and `payback` over the arms of one comparison."""

    def __init__(self, prices: PriceTable):
        self.prices = prices
        self._tests: dict[tuple[str, str], PairedTest] = {}
        self._paybacks: dict[tuple[str, str], Payback] = {}

    def test(self, a: ArmSummary, b: ArmSummary) -> PairedTest:
        """McNemar (0/1 scores) or paired bootstrap of b - a on the items both arms scored; a bootstrap over
        items and seeds when either arm was repeated; after an adaptive evaluation, with the confidence
        sequence the stopping rule used beside it."""
        key = (a.name, b.name)
        if key not in self._tests:
            test = seeded_test(a, b) if repeated(a) or repeated(b) else paired_test(a, b)
            if a.adaptive is not None and b.adaptive is not None:  # both scored a prefix of one shuffled order
                x, y = paired_scores(a, b)
                test.sequence = confidence_sequence(y - x, a.adaptive.alpha)
            self._tests[key] = test
        return self._tests[key]

    def payback(self, incumbent: ArmSummary, challenger: ArmSummary) -> Payback:
        """Monthly volume above which the challenger is the cheaper arm (see `costs.payback`)."""
        key = (incumbent.name, challenger.name)
        if key not in self._paybacks:
            self._paybacks[key] = payback(incumbent.cost(), challenger.cost(), self.prices)
        return self._paybacks[key]
