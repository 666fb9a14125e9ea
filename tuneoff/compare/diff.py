"""`tuneoff diff A B`: two experiments (store ids or report.json files) compared arm by arm.

Per arm present in both: the main metric of each, the paired test on the items both scored, and the
items whose score changed (flipped). Beside them, every setting that differs (the experiment file,
each arm's configuration as evaluated after tuning, the model each arm ran, its training run's
fingerprint) and whether the test set is the same. A changed test set is said and nothing is
compared: a difference in metric would mix the change with the new items.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import TuneoffError
from ..store import Store
from .arms import ArmSummary, items_hash, scored_items
from .comparison import Comparison
from .stats import PairedTest, paired_test

ARM_FIELDS = ("name", "kind", "model", "metric_name", "metric", "ci_low", "ci_high", "item_ids", "correct",
              "predictions", "targets", "labels", "inputs", "outputs", "flags", "tuning", "runs")
"""What a side needs of each arm; report.json carries them (`Comparison.arms`)."""


@dataclass
class Side:
    """One experiment as the diff sees it."""

    label: str
    """How the user named it: an id or a file."""
    name: str
    arms: list[ArmSummary]
    settings: dict[str, str]
    """Dotted setting -> its value as JSON text (`Comparison.settings`)."""


@dataclass
class Flip:
    item: str
    a: float
    """The item's score in A."""
    b: float


@dataclass
class ArmDiff:
    name: str
    metric_name: str
    a: ArmSummary
    b: ArmSummary
    test: PairedTest
    """b - a on the items both scored."""
    flips: list[Flip] = field(default_factory=list)
    """Items whose score changed, largest change first."""

    @property
    def better(self) -> int:
        return sum(f.b > f.a for f in self.flips)

    @property
    def worse(self) -> int:
        return sum(f.b < f.a for f in self.flips)


@dataclass
class SettingChange:
    key: str
    a: str | None
    """None: not set in A (its default applied, or A has no such arm)."""
    b: str | None


@dataclass
class ExperimentDiff:
    a: Side
    b: Side
    same_test_set: bool
    test_set: str
    """One line on the test sets: the same n items, or what changed."""
    settings: list[SettingChange]
    arms: list[ArmDiff]
    """Empty when the test set changed: then nothing is compared."""
    only_a: list[str]
    only_b: list[str]
    settings_note: str = ""
    """Why no setting can be compared (a report.json written before settings were recorded), else empty."""

    def flipped_ids(self) -> list[str]:
        seen: dict[str, None] = {}
        for d in self.arms:
            seen.update((f.item, None) for f in d.flips)
        return list(seen)

    def explorer_arms(self) -> list[ArmSummary]:
        """Each compared arm twice, `name (A)` beside `name (B)`: the explorer's columns."""
        return [dataclasses.replace(s, name=f"{d.name} ({tag})") for d in self.arms for s, tag in ((d.a, "A"), (d.b, "B"))]


def load_side(ref: str, store: Store | None) -> Side:
    """An experiment id in the store, or a report.json file."""
    if ref.isdigit():
        from .rebuild import comparison_from_store

        if store is None:
            raise TuneoffError(f"experiment {ref} needs a store", field="A/B")
        return side_of(comparison_from_store(store, int(ref)), ref)
    path = Path(ref)
    if path.is_dir():
        path = path / "report.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TuneoffError(f"{ref!r} is neither an experiment id nor a report.json file", file=ref,
                           hint="pass an id from `tuneoff runs` or the report.json a run wrote") from None
    except (OSError, ValueError) as exc:
        raise TuneoffError(f"cannot read a report from it: {exc}", file=str(path)) from None
    if not isinstance(data, dict) or not isinstance(data.get("arms"), list):
        raise TuneoffError("not a tuneoff report.json (no `arms` list)", file=str(path))
    arms = [ArmSummary(**{k: a[k] for k in ARM_FIELDS if k in a}) for a in data["arms"]]
    return Side(ref, str(data.get("experiment", "")), arms, dict(data.get("settings") or {}))


def side_of(c: Comparison, label: str) -> Side:
    return Side(label, c.experiment, list(c.arms), dict(c.settings))


def diff_experiments(a: Side, b: Side) -> ExperimentDiff:
    ia, ib = scored_items(a.arms), scored_items(b.arms)
    same = ia == ib
    if same:
        line = f"same test set: {len(ia)} items (hash {items_hash(ia)})"
    else:
        shared = set(ia) & set(ib)
        changed = sum(ia[i] != ib[i] for i in shared)
        line = (f"test set changed: A has {len(ia)} items (hash {items_hash(ia)}), B {len(ib)} (hash "
                f"{items_hash(ib)}); {len(shared)} ids shared, {changed} of them with another input or target. "
                f"Metrics are not compared: a difference would mix the change with the new items.")
    names_a, names_b = [x.name for x in a.arms], [x.name for x in b.arms]
    arms = [arm_diff(x, next(y for y in b.arms if y.name == x.name)) for x in a.arms if x.name in names_b] if same else []
    missing = [side.label for side in (a, b) if not side.settings]
    note = (f"settings not recorded in {' and '.join(missing)} (a report written by an older tuneoff): "
            "compare the experiment files by hand" if missing else "")
    return ExperimentDiff(a, b, same, line, [] if missing else setting_changes(a.settings, b.settings), arms,
                          [n for n in names_a if n not in names_b], [n for n in names_b if n not in names_a], note)


def arm_diff(a: ArmSummary, b: ArmSummary) -> ArmDiff:
    """The paired test (McNemar for 0/1 scores, a paired bootstrap otherwise) and the flipped items."""
    test = paired_test(dataclasses.replace(a, name=f"{a.name} (A)"), dataclasses.replace(b, name=f"{b.name} (B)"))
    theirs = dict(zip(b.item_ids, b.correct))
    flips = [Flip(item, float(x), float(theirs[item])) for item, x in zip(a.item_ids, a.correct)
             if item in theirs and abs(float(theirs[item]) - float(x)) > 1e-9]
    flips.sort(key=lambda f: -abs(f.b - f.a))  # stable: item order within equal changes
    return ArmDiff(a.name, a.metric_name, a, b, test, flips)


def setting_changes(a: dict[str, str], b: dict[str, str]) -> list[SettingChange]:
    keys = list(a) + [k for k in b if k not in a]
    changes = [SettingChange(k, a.get(k), b.get(k)) for k in keys if a.get(k) != b.get(k)]
    return sorted(changes, key=lambda s: ": " in s.key)  # the experiment file's keys first, then each arm's
