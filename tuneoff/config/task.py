"""A task as data: where its examples are, how to read them, what counts as right.

Used by `tuneoff eval`, `tuneoff finetune` and experiment files alike, so every arm of a
comparison sees the same splits.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..data import Example
from ..errors import TuneoffError


@dataclass
class TaskSpec:
    """One task: data files, column mapping, label set, metric, default instruction."""

    name: str
    """Short name used in the store and the report."""
    train: str | None = None
    """Training file (also the pool of few-shot demos)."""
    dev: str | None = None
    """Dev file (prompt optimisation, early stopping); split off `train` when absent."""
    test: str | None = None
    """Test file (the reported numbers); split off `train` when absent."""
    input: str | None = None
    """Input column(s)/key(s) for CSV/TSV/JSON: `a|b` takes the first present, `a,b` joins several."""
    target: str | list[str] | None = None
    """Target column/key; a list (or `a,b,c`) names several reference columns, the first being the one
    demos and training use; a column holding a JSON list of strings gives several references too."""
    label_map: dict | None = None
    """Raw target value -> label name, e.g. {"0": "negative", "1": "positive"}."""
    labels: list[str] | str | None = None
    """The label set (classification), or a path to a JSON list of labels; None for free text."""
    metric: str | list[str] = "accuracy"
    """Main metric, a name in `tuneoff.metrics.METRICS` (README "Metrics"): accuracy (labels),
    exact_match, numeric (GSM8K-style), rougeL / chrf / bleu ... (free text). A list: the first is the
    main metric, the others secondary."""
    secondary_metrics: list[str] = field(default_factory=list)
    """Further metrics shown as rows of their own (value, CI, paired test), never ranking arms."""
    instruction: str = ""
    """The task instruction prompt arms start from."""
    n_train: int | None = None
    """Seeded, stratified subsample of the training set (None: all)."""
    n_dev: int | None = None
    """Seeded, stratified subsample of the dev set."""
    n_test: int | None = None
    """Seeded, stratified subsample of the test set."""
    split_fraction: float = 0.1
    """When dev/test files are missing: the fraction of `train` split off for each."""
    seed: int = 0
    """Seed for splits and subsamples."""
    output: dict | None = None
    """What every reply must look like: `{schema: FILE.json | {inline JSON Schema}, regex: RE, max_words: N}`
    (`tuneoff.structured`); each reply is checked, and JSON targets get field-level scores."""
    grounding: bool | None = None
    """Check replies for content their input does not support (README "Grounding"); default: on for
    free text (no label set), off for labels."""
    base_dir: str = field(default=".", repr=False)
    """Directory relative paths are resolved against (the experiment file's folder)."""

    def __post_init__(self):
        if not self.train and not self.test:
            raise TuneoffError("a task needs at least a `train` or a `test` file", field="task.train")
        from ..metrics import get_metric

        if isinstance(self.target, list):
            self.target = ",".join(str(t) for t in self.target)
        if isinstance(self.metric, list):
            if not self.metric:
                raise TuneoffError("a metric list cannot be empty", field="task.metric")
            self.metric, self.secondary_metrics = str(self.metric[0]), [*self.metric[1:], *self.secondary_metrics]
        get_metric(self.metric, field="task.metric")  # the registry is the one list of metric names
        for k, name in enumerate(self.secondary_metrics):
            get_metric(name, field=f"task.secondary_metrics[{k}]")
        self.secondary_metrics = [m for m in dict.fromkeys(self.secondary_metrics) if m != self.metric]
        if not 0 < self.split_fraction < 0.5:
            raise TuneoffError("must be in (0, 0.5)", field="task.split_fraction")
        for name in ("n_train", "n_dev", "n_test"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise TuneoffError("must be >= 1", field=f"task.{name}")

    def path(self, name: str | None) -> Path | None:
        if not name:
            return None
        p = Path(name).expanduser()
        return p if p.is_absolute() else Path(self.base_dir) / p

    def output_format(self):
        """The task's `OutputFormat` (None without `output:`); a bad schema file names its file and line."""
        from ..structured import OutputFormat

        if self.output is None:
            return None
        if not isinstance(self.output, dict):
            raise TuneoffError("must be a mapping: {schema: FILE, regex: RE, max_words: N}", field="task.output")
        return OutputFormat.from_dict(self.output, base=Path(self.base_dir))

    def label_list(self) -> list[str] | None:
        if self.labels is None:
            return None
        if isinstance(self.labels, str):
            path = self.path(self.labels)
            if not path or not path.exists():
                raise TuneoffError(f"label file not found: {self.labels}", field="task.labels")
            return [str(x) for x in json.loads(path.read_text())]
        return [str(x) for x in self.labels]


@dataclass
class TaskData:
    """The loaded splits of a task."""

    spec: TaskSpec
    train: list[Example]
    dev: list[Example]
    test: list[Example]
    labels: list[str] | None

    def split(self, name: str) -> list[Example]:
        if name not in ("train", "dev", "test"):
            raise TuneoffError(f"unknown split '{name}'", field="split", hint="train, dev or test")
        return getattr(self, name)


def load_task(spec: TaskSpec) -> TaskData:
    """Read, validate and split a task's data: same spec and seed, same splits on any machine.

    A file with any error raises one `DataError` listing every problem; subsamples are seeded,
    stratified and nested (the first n of a larger sample), so learning curves share items.
    """
    from ..data import ColumnMapping, load_splits, subsample

    labels = spec.label_list()
    mapping = ColumnMapping(input=spec.input, target=spec.target, label_map=spec.label_map)
    splits = load_splits(spec.path(spec.train), spec.path(spec.dev), spec.path(spec.test), mapping=mapping,
                         labels=labels, fraction=spec.split_fraction, seed=spec.seed)
    return TaskData(spec=spec, train=subsample(splits.train, spec.n_train, spec.seed),
                    dev=subsample(splits.dev, spec.n_dev, spec.seed),
                    test=subsample(splits.test, spec.n_test, spec.seed), labels=labels)
