"""An experiment as data: a task, a model, arms, and comparison settings, read from YAML.

Errors name the file, the line and the dotted field (`arms[2].prompt.shots`): the YAML is
composed into nodes first so every value keeps its position.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from ..errors import TuneoffError, did_you_mean
from ..models.decode import check_decode
from ..models.options import DEFAULT_MODEL, canonical_dtype, check_device, check_engine
from .adaptive import AdaptiveSpec
from .arms import ArmEntry, ArmKind, ArmOptions, build_finetune_arm, build_prompt_arm  # noqa: F401 (their home was here)
from .overrides import apply_overrides, overridden_by
from .prices import Constraints, PriceTable
from .judge import JudgeSpec
from .probes import OutOfDomainSpec, ProbeSpec
from .specs import from_dict, located, read_yaml
from .task import TaskData, TaskSpec, load_task
from .tuning import TuningSpec

SUPPORTED_VERSIONS = (1,)


@dataclass
class CurveSpec:
    """Learning curves: metric vs k demos and vs n training examples."""

    shots: list[int] = field(default_factory=list)
    """k values for the few-shot curve (of `prompt_arm`)."""
    n_train: list[int] = field(default_factory=list)
    """n values for the fine-tuning curve (of `finetune_arm`)."""
    prompt_arm: str | None = None
    """Prompt arm whose `shots` varies; default: the first prompt arm with shots > 0."""
    finetune_arm: str | None = None
    """Fine-tune arm whose `n_train` varies; default: the first fine-tune arm."""

    def __post_init__(self):
        for name in ("shots", "n_train"):
            values = getattr(self, name)
            if any(v < (0 if name == "shots" else 1) for v in values):
                raise TuneoffError("values must be >= 0 (shots) / >= 1 (n_train)", field=f"curves.{name}")


@dataclass
class ConsistencySpec:
    """Control and consistency: the same arm under instruction paraphrases and sampling seeds."""

    arms: list[str] = field(default_factory=list)
    """Arms to probe (prompt or combined arms); default: every prompt arm in score mode is skipped
    unless listed, since scoring is deterministic."""
    paraphrases: list[str] = field(default_factory=list)
    """Alternative instructions."""
    seeds: list[int] = field(default_factory=list)
    """Sampling seeds (sampling at `temperature`)."""
    temperature: float = 0.7
    n_items: int | None = None
    """Test items to use (a prefix of the test split); default all."""


@dataclass
class FlexibilitySpec:
    """Score each fine-tuned model on a second, unrelated task and report the drop vs the base model."""

    task: TaskSpec
    prompt: dict = field(default_factory=dict)
    """How the second task is prompted (default zero-shot in score mode when it has labels)."""


@dataclass
class Experiment:
    """A whole comparison, as written in an experiment YAML file."""

    name: str
    task: TaskSpec
    arms: list[ArmEntry]
    version: int = 1
    """Schema version of the file."""
    model: str = DEFAULT_MODEL
    dtype: str = "float32"
    """float32, bfloat16, int8 (CPU) or auto, for every arm's evaluation (fine-tune arms train in their own
    `finetune.dtype`; their models are evaluated in this one)."""
    device: str = "auto"
    """Where evaluations run: `auto` (CUDA when present, else CPU), `cpu`, `cuda` or `cuda:N`. A fine-tune
    arm trains where its own `finetune: {device: ...}` says (also `auto` by default)."""
    engine: str = "transformers"
    """Generation engine of the base model's generated arms: `transformers` (batched, measured faster
    for evaluation) or `llamacpp` (GGUF models only; see `tuneoff.models.llamacpp`). Scoring and
    fine-tuned models always run in transformers."""
    decode: str = "eager"
    """How transformers decodes generated arms: `eager`, or `compiled` (static KV cache, torch.compile'd
    decode step, compile paid once per shape bucket: `tuneoff.models.decode`; BENCHMARKS.md section 3)."""
    batch_size: int = 16
    curves: CurveSpec | None = None
    consistency: ConsistencySpec | None = None
    flexibility: FlexibilitySpec | None = None
    repeats: int = 1
    """Runs of each arm with new seeds (fine-tuning init, data order and subsample; demo draws;
    sampling): the table shows mean ± std, the CI carries item and run variance, and a run that
    collapses to the majority-class rate is flagged. An arm's own `repeats` overrides it."""
    tuning: TuningSpec | None = None
    """Each side's tuning budget on dev (see `tuneoff.config.tuning`); absent: arms run as written."""
    probe: ProbeSpec = field(default_factory=ProbeSpec)
    """The serving probe after each arm's evaluation: `{items: 16, concurrency: 8}` (items 0: off)."""
    ood: OutOfDomainSpec | None = None
    """An out-of-domain test file every arm is also scored on (same labels and metric as `task`)."""
    adaptive: AdaptiveSpec | None = None
    """Score the test split in interleaved chunks and stop each arm once its comparison with the best
    is settled by an anytime-valid test (see `tuneoff.config.adaptive`); absent: every arm scores it all."""
    judge: JudgeSpec | None = None
    """An LLM judge grading every arm's test outputs, with its own reliability figures
    (see `tuneoff.config.judge`); absent: no judge pass."""
    prices: PriceTable = field(default_factory=PriceTable)
    constraints: Constraints = field(default_factory=Constraints)
    output: str = "tuneoff-runs/{name}"
    """Where models and the report go, relative to the experiment file."""
    base_dir: str = field(default=".", repr=False)

    def __post_init__(self):
        if self.version not in SUPPORTED_VERSIONS:
            raise TuneoffError(f"unsupported version {self.version}", field="version",
                               hint=f"this tuneoff reads versions {SUPPORTED_VERSIONS}")
        if not self.arms:
            raise TuneoffError("an experiment needs at least one arm", field="arms")
        if self.repeats < 1:
            raise TuneoffError("must be >= 1", field="repeats")
        check_device(self.device)
        canonical_dtype(self.dtype)  # the named-field error for an unknown dtype, same aliases as everywhere
        check_engine(self.engine, allowed=("transformers", "llamacpp"))
        check_decode(self.decode)
        names = [a.name for a in self.arms]
        for i, arm in enumerate(self.arms):
            if names.count(arm.name) > 1:
                raise TuneoffError(f"duplicate arm name '{arm.name}'", field=f"arms[{i}].name")
            if arm.finetuned and (self.arm(arm.finetuned) is None or self.arm(arm.finetuned).kind is not ArmKind.FINETUNE):
                raise TuneoffError(f"'{arm.finetuned}' is not a fine-tune arm of this experiment", field=f"arms[{i}].finetuned",
                                   hint="fine-tune arms: " + ", ".join(a.name for a in self.arms if a.kind is ArmKind.FINETUNE))
        self._check_name_and_output()
        for i, arm in enumerate(self.arms):
            arm.parse(self.task, self.tuning, i)
        if self.batch_size < 1:
            raise TuneoffError("must be >= 1", field="batch_size")
        self._check_probes()
        if self.adaptive is not None and len(self.arms) < 2:
            raise TuneoffError("adaptive evaluation stops arms once their comparison with the best is settled: "
                               "it needs at least two arms", field="adaptive", hint="remove `adaptive:`")
        self.model = beside(self.model, self.base_dir)
        for i, arm in enumerate(self.arms):
            if arm.model:
                arm.model = beside(arm.model, self.base_dir)
            _check_arm_model(arm, i)
            _check_teacher(self, arm, i)
        self.task.base_dir = self.base_dir
        self.task.output_format()  # a bad schema fails at load, naming its file and line
        if self.judge is not None:
            self.judge.check_arms(names)
            self.judge.model = beside(self.judge.model, self.base_dir)
            check_model(self.judge.model, "judge.model")
            self.judge.base_dir = self.base_dir
        if self.flexibility:
            self.flexibility.task.base_dir = self.base_dir

    def tuned(self, entry: ArmEntry) -> bool:
        """Whether an arm searches on dev first: fine-tune arms by default under `tuning:`, prompt arms
        when marked `tune: true`."""
        if self.tuning is None:
            return False
        return entry.tune is not False if entry.kind is ArmKind.FINETUNE else bool(entry.tune)

    def repeats_of(self, entry: ArmEntry) -> int:
        return entry.repeats if entry.repeats is not None else self.repeats

    def _check_name_and_output(self) -> None:
        # the name becomes a folder under `output`: one plain path part, or `../../x` escapes it
        if not re.fullmatch(r"[^/\\\x00-\x1f]{1,200}", self.name) or self.name.strip(". ") == "":
            raise TuneoffError(f"{self.name!r} cannot name a folder", field="name",
                               hint="use letters, digits, spaces and . + - _ (no / or \\, not . or ..)")
        try:
            fields = [(f, spec, conv) for _, f, spec, conv in string.Formatter().parse(self.output) if f is not None]
        except ValueError as exc:
            raise TuneoffError(f"bad braces: {exc}", field="output", hint="write {name} or no braces") from None
        if any(f != "name" or spec or conv for f, spec, conv in fields):
            bad = next(f for f, spec, conv in fields if f != "name" or spec or conv)
            raise TuneoffError(f"unknown placeholder {{{bad}}}", field="output",
                               hint="the one placeholder is {name} (the experiment's name)")

    def _check_probes(self) -> None:
        """Arms that curves and consistency name exist and are of the right kind, before any training."""
        kinds = {a.name: a.kind for a in self.arms}
        for i, name in enumerate(self.consistency.arms if self.consistency else []):
            if name not in kinds:
                raise TuneoffError(f"no arm '{name}' in this experiment", field=f"consistency.arms[{i}]",
                                   hint=did_you_mean(name, list(kinds)))
        c = self.consistency
        if c and (c.temperature < 0 or (c.temperature == 0 and c.seeds)):
            raise TuneoffError("must be > 0: seeds only differ when the model samples", field="consistency.temperature")
        if self.curves:
            self._check_curve_arm("prompt_arm", ArmKind.PROMPT, bool(self.curves.shots))
            self._check_curve_arm("finetune_arm", ArmKind.FINETUNE, bool(self.curves.n_train))

    def _check_curve_arm(self, key: str, kind: ArmKind, wanted: bool) -> None:
        name, of_kind = getattr(self.curves, key), [a for a in self.arms if a.kind is kind]
        if name is not None and name not in [a.name for a in of_kind]:
            raise TuneoffError(f"'{name}' is not a {kind} arm of this experiment", field=f"curves.{key}",
                               hint=did_you_mean(name, [a.name for a in of_kind]))
        shots = kind is ArmKind.PROMPT  # the demos curve's default arm is one that shows demos
        default = any(not shots or a.options.prompt.shots for a in of_kind)
        if wanted and name is None and not default:
            what = "shots" if shots else "n_train"
            raise TuneoffError(f"a curve over {what} needs a {kind} arm" + (" with shots > 0" if shots else ""),
                               field=f"curves.{what}", hint=f"add one, or name it in curves.{key}")

    def prices_of(self, entry: ArmEntry) -> PriceTable:
        """The prices an arm's cost rows use: its own, else (a combined arm) its fine-tune's, else the experiment's."""
        if entry.prices is not None:
            return entry.prices
        tuned = self.arm(entry.finetuned) if entry.finetuned else None
        return tuned.prices if tuned is not None and tuned.prices is not None else self.prices

    def arm(self, name: str) -> ArmEntry | None:
        return next((a for a in self.arms if a.name == name), None)

    def output_dir(self) -> Path:
        out = Path(self.output.format(name=self.name))
        return out if out.is_absolute() else Path(self.base_dir) / out


def _check_teacher(exp: Experiment, arm: ArmEntry, i: int) -> None:
    """A distilled arm's teacher is another arm of the experiment, not itself a distilled one."""
    teacher = arm.teacher
    if teacher is None:
        return
    where = f"arms[{i}].finetune.teacher"
    found = exp.arm(teacher) if isinstance(teacher, str) else None
    if found is None or found is arm:
        raise TuneoffError(f"'{teacher}' is not another arm of this experiment", field=where,
                           hint=did_you_mean(str(teacher), [a.name for a in exp.arms if a is not arm]))
    if found.teacher:
        raise TuneoffError(f"'{teacher}' is itself distilled: a teacher must be a prompt or plain fine-tune arm",
                           field=where)


def _check_arm_model(arm: ArmEntry, i: int) -> None:
    """A served model can be prompted, not trained: training needs the weights here."""
    from ..models.registry import LOCAL, kind_of

    if arm.model and arm.kind.changes_weights and kind_of(arm.model) != LOCAL:
        raise TuneoffError(f"'{arm.model}' is served over HTTP: a {arm.kind} arm needs local weights",
                           field=f"arms[{i}].model", hint="give it a local model (embedded:NAME or a directory)")


def load_experiment(path: str | Path, overrides: Sequence[str] = ()) -> Experiment:
    """Read and validate an experiment file, with `overrides` (`KEY=VALUE`, `tuneoff run --set`) applied
    first; errors carry its file, line and field, or the override that set the field."""
    data, root = read_yaml(path, "an experiment: a mapping of name, task, arms, ...")
    data, applied = apply_overrides(data, overrides)
    try:
        with located(path, root):
            exp = from_dict(Experiment, {**data, "base_dir": str(Path(path).parent)}, "", str(path))
            check_files(exp)
            check_arm_options(exp)
    except TuneoffError as exc:
        given = overridden_by(exc.field or "", applied)
        if given is not None:  # the file's line would point at the value the override replaced
            exc.line, exc.message = None, f"{exc.message} (set by --set {given})"
            exc.args = (exc.render(),)
        raise
    return exp


def check_files(exp: Experiment) -> None:
    """The label files and local models an experiment names exist, before anything runs (a missing
    one used to fail after training, with no file or line)."""
    exp.task.label_list()
    if exp.flexibility:
        exp.flexibility.task.label_list()
    check_model(exp.model, "model")
    for i, entry in enumerate(exp.arms):
        if entry.model:
            check_model(entry.model, f"arms[{i}].model")


def _spec_not_path(name: str) -> bool:
    """`embedded:NAME` or another `kind:...` spec (a served model's URL, `openai:NAME`): not a local path."""
    return bool(re.match(r"[A-Za-z][\w.+-]*:", name))


def beside(model: str, base_dir: str) -> str:
    """A relative local model path as the experiment's folder sees it, as its data files and output are;
    where nothing is there, the path as given (relative to the current folder, as before)."""
    if _spec_not_path(model) or Path(model).expanduser().is_absolute():
        return model
    there = Path(base_dir) / model
    return str(there) if there.exists() else model


def check_model(name: str, field: str) -> None:
    """A model spec that is a local path must exist; `embedded:` names must be known. Other
    `kind:` specs (served backends) are checked when they are built."""
    if name.startswith("embedded:"):
        from ..models.embedded import get_embedded

        try:
            get_embedded(name.split(":", 1)[1])
        except TuneoffError as exc:
            raise TuneoffError(exc.message, field=field, hint=exc.hint) from None
        return
    if _spec_not_path(name):  # `kind:...`, e.g. a served model's URL: its backend checks it
        return
    if not Path(name).expanduser().exists():
        raise TuneoffError(f"no model at '{name}'", field=field,
                           hint="a local model directory, a .gguf file, or embedded:NAME (see `tuneoff models`)")


def check_arm_options(exp: Experiment) -> None:
    """What the arms' options (parsed with the experiment: `ArmEntry.parse`) ask of the rest of the file,
    and their templates rendered once, so a typo fails before any model call."""
    for i, entry in enumerate(exp.arms):
        if entry.tune and exp.tuning is None:
            raise TuneoffError("`tune: true` needs the experiment's `tuning:` section (the budget)",
                               field=f"arms[{i}].tune", hint="add `tuning: {}` for the default budgets")
        if len(entry.options.finetune) > 1 and not exp.tuned(entry):
            raise TuneoffError("a list of values is a set of candidates: it needs the experiment's "
                               "`tuning:` section (and the arm not opted out)", field=f"arms[{i}].finetune",
                               hint="add `tuning: {}`")
        dry_render(entry.options.prompt, exp.task, where=f"arms[{i}].prompt")


def dry_render(arm, task: TaskSpec, where: str) -> None:
    """Render an arm's templates once on stand-in examples, so a misspelt variable fails at load
    rather than after the fine-tune arms have trained. Only unknown variables are reported here:
    other render errors may depend on the real data, and surface before the arm's first call."""
    from ..data import Example
    from ..prompting import TaskContext, build_strategy
    from ..prompting.strategies import hoist_system

    labels = tuple(task.label_list() or ()) or None
    stand_in = [Example(input="text", target=(labels or ("answer",))[i % len(labels or "a")],
                        id=f"stand-in-{i}") for i in range(max(4, 2 * arm.n_shots))]
    context = TaskContext(name=task.name, labels=labels, metric=task.metric, instruction=task.instruction,
                          pool=tuple(stand_in))
    try:  # the strategy alone: a demo selector may load an embedding model, which no config read should
        hoist_system(build_strategy(arm, context).messages(stand_in[0], stand_in[1:1 + arm.n_shots]))
    except TuneoffError as exc:
        # `fields.<column>` depends on the data file's columns: only a top-level name is surely wrong
        if "unknown variable" in exc.message and "is undefined" in exc.message:
            exc.field = f"{where}.{exc.field}" if exc.field else where
            exc.args = (exc.render(),)
            raise


def load_task_data(task: TaskData | TaskSpec | str | Path) -> TaskData:
    """A loaded task from TaskData, a TaskSpec, a task YAML file, or an experiment file (its `task`)."""
    from .specs import load_spec

    if isinstance(task, TaskData):
        return task
    if isinstance(task, TaskSpec):
        return load_task(task)
    path = Path(task)
    data, _ = read_yaml(path)
    if "arms" in data:
        return load_task(load_experiment(path).task)
    return load_task(load_spec(TaskSpec, path, base_dir=str(path.parent)))
