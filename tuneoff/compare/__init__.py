"""The comparison: arm summaries -> the table, statistics, costs and break-even, the verdict; and
the rebuild of all of it from the store.

    arms.py        ArmSummary, Curve: what is known about one arm / one learning curve
    stats.py       the paired test, label bias, crossover, confusion matrix (scipy lives here)
    sequential.py  anytime-valid confidence sequences of a paired difference; adaptive evaluation's stopping rule
    costs.py       $ per request and one-off, monthly cost, payback volume
    pairs.py       PairStats: each pair's test and payback computed once, shared by every reader
    table.py       the head-to-head rows and the side-by-side sample
    verdict.py     Verdict and recommend(): constraints first, then quality, then cost
    comparison.py  Comparison, Crossover, BreakEven and build_comparison()
    rebuild.py     comparison_from_store(): every number as a query over stored runs
"""

from .arms import ArmSummary, Curve, ItemFlag, OutOfDomain
from .comparison import BreakEven, Comparison, Crossover, build_comparison
from .costs import ArmCost, OneOff, Payback, cost_curve, monthly, one_off, one_off_parts, payback, per_request
from .pairs import PairStats
from .stats import PairedTest, best, crossover, label_bias, paired_test
from .table import head_to_head
from .verdict import Verdict, recommend

__all__ = ["ArmCost", "ArmSummary", "BreakEven", "Comparison", "Crossover", "Curve", "ItemFlag", "OneOff", "OutOfDomain",
           "PairStats", "PairedTest", "Payback", "Verdict", "best", "build_comparison", "cost_curve", "crossover",
           "head_to_head", "label_bias", "monthly", "one_off", "one_off_parts", "paired_test", "payback", "per_request",
           "recommend"]
