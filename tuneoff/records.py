"""Typed rows the store keeps between rooms: the role a run plays in an experiment, and each run
kind's summary (`runs.summary_json`). Writers and readers go through these classes only, so a field
renamed here is renamed for both sides, and a test that fills a store by hand exercises the same
contract as a real run (`tests/test_summaries.py`).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, TypeVar

if TYPE_CHECKING:
    from .store import Store

T = TypeVar("T", bound="Record")

MODEL_META = "tuneoff.json"
"""The file a model folder written by tuneoff carries (a fine-tune's output, a merged adapter, an embedded
GGUF model as transformers weights): written last, so its presence marks the folder finished."""


def read_model_meta(folder: Path | str) -> dict:
    """A model folder's `tuneoff.json` ({} when it has none): a fine-tune's {"run_id", "fingerprint",
    "base", "arm", "task", "stats", ...} (`tuneoff.finetune.outputs`), an embedded model's {"source_gguf"}."""
    path = Path(folder) / MODEL_META
    return json.loads(path.read_text()) if path.exists() else {}


class TextEnum(str, Enum):
    """A str enum that prints, formats and serialises as its value (what `enum.StrEnum` does from 3.11):
    stored rows, JSON and messages see `finetune`, code compares members."""

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


class RunKind(TextEnum):
    """What a stored run is (`runs.kind`); `Store.start_run` takes no other."""

    EVAL = "eval"
    """An evaluation of an arm on a split (its predictions and metrics)."""
    OPTIMISE = "optimise"
    """A prompt arm's search on dev (the search run, and each candidate's evaluation)."""
    TUNE = "tune"
    """A dev evaluation of an in-training model (a fine-tune arm's search)."""
    TUNING = "tuning"
    """A fine-tune arm's search on dev (`TuningSummary`)."""
    FINETUNE = "finetune"
    """A training run (`TrainStats`)."""
    DISTILL = "distill"
    """A teacher's answers to a distilled arm's training inputs."""
    CONSISTENCY = "consistency"
    PROBE = "probe"
    """A serving probe (`ProbeSummary`)."""
    ADAPTIVE = "adaptive"
    """An adaptive evaluation's stopping record (`AdaptiveSummary`)."""
    ASK = "ask"
    """One `tuneoff ask` call."""


class Role(str, Enum):
    """What a run linked to an experiment is for (`experiment_runs.role`)."""

    ARM = "arm"
    """The arm's evaluation on the test split: its column in the table."""
    FINETUNE = "finetune"
    """The training run of a fine-tune arm (trainable parameters, time, tokens)."""
    OPTIMISE = "optimise"
    """A prompt arm's optimisation on dev (its calls and time count as development effort)."""
    CURVE = "curve"
    """One learning-curve point's evaluation (x = k demos or n training examples)."""
    CURVE_TRAIN = "curve_train"
    """The training run behind a fine-tuning curve point (x = n): its time is part of the curve's cost."""
    TUNING = "tuning"
    """A fine-tune arm's search on dev (trials, their dev metrics, the chosen configuration)."""
    REPEAT = "repeat"
    """The arm's evaluation again with new seeds (x = repeat index, 1..N-1; the ARM run is repeat 0)."""
    REPEAT_TRAIN = "repeat_train"
    """The training run behind a fine-tune arm's repeat (new init, data order and subsample)."""
    CONSISTENCY = "consistency"
    """The paraphrase/seed probe of an arm."""
    FLEXIBILITY = "flexibility"
    """A fine-tuned model scored on the second, unrelated task."""
    DISTILL = "distill"
    """A teacher arm answering a distilled arm's training inputs (linked under the student's name)."""
    FLEXIBILITY_BASE = "flexibility_base"
    """The base model on that task: the reference the drop is measured against."""
    PROBE = "probe"
    """The serving probe of an arm: single-request latency and throughput at a stated concurrency."""
    OOD = "ood"
    """The arm's evaluation on the out-of-domain test file (same labels and metric)."""
    JUDGE = "judge"
    """The judge pass over every arm's test outputs (linked under the arm name "")."""
    ADAPTIVE = "adaptive"
    """The stopping record of an adaptive test evaluation (kind `adaptive`, `AdaptiveSummary`), linked
    once per experiment under the arm name `*`."""


@dataclass(frozen=True)
class Link:
    """One run linked to an experiment (`experiment_runs`): what it is for, for which arm, at which x."""

    run_id: int
    role: Role
    arm: str
    """The arm's name (`*` for the adaptive stopping record, `base` for the base model's flexibility run,
    empty for the experiment's judge pass)."""
    x: int | None = None
    """A curve point's k or n, a repeat's index."""

    def __post_init__(self):
        object.__setattr__(self, "role", Role(self.role))  # a stored string back to the enum


class ExperimentRuns:
    """An experiment's linked runs read back from the store, by role and arm in link order (a rerun's
    link comes later and counts): the one readback the comparison (`compare.rebuild`), `serve
    --experiment` and the runner's later units use."""

    def __init__(self, links: Iterable[Link]):
        self.links = list(links)
        self._by: dict[Role, dict[str, list[Link]]] = {}
        for link in self.links:
            self._by.setdefault(link.role, {}).setdefault(link.arm, []).append(link)

    @classmethod
    def read(cls, store: Store, experiment_id: int) -> ExperimentRuns:
        return cls(Link(int(r["run_id"]), r["role"], r["arm"], r["x"]) for r in store.linked_runs(experiment_id))

    def arms(self, role: Role) -> dict[str, list[Link]]:
        """Arm name -> its links in `role`, arms in the order they were first linked."""
        return self._by.get(role, {})

    def of(self, role: Role, arm: str | None) -> list[Link]:
        return self._by.get(role, {}).get(arm, []) if arm is not None else []

    def last(self, role: Role, arm: str | None) -> int | None:
        """The run id last linked to `arm` in `role`, if any."""
        links = self.of(role, arm)
        return links[-1].run_id if links else None


class Record:
    """`to_dict` / `from_dict` / `from_json` for the summary dataclasses below."""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls: type[T], data: dict[str, Any]) -> T:
        # unknown keys are ignored: a store written by a newer tuneoff still reads
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        return cls(**{k: v for k, v in data.items() if k in names})

    @classmethod
    def from_json(cls: type[T], text: str | None) -> T:
        return cls.from_dict(json.loads(text or "{}"))


@dataclass
class MainMetric(Record):
    name: str
    value: float | None


@dataclass
class EvalSummary(Record):
    """An evaluation run (kind `eval` / `optimise` candidates)."""

    wall_seconds: float = 0.0
    """Wall time over every attempt (a resumed run adds the interrupted ones)."""
    cache_hits: int = 0
    cache_misses: int = 0
    resumed: int = 0
    main: dict | None = None
    """{"name", "value"} of the task's main metric (see `main_metric`)."""
    warnings: list = field(default_factory=list)
    """Setup problems printed with the run (e.g. label words sharing their first token)."""
    ran_on: str = ""
    """Precision and machine of the scores, e.g. `bfloat16 on cpu (AMD EPYC 9R14)`; `server` for a served
    model (empty in stores written before it was recorded). Precision moves label scores (BENCHMARKS.md 7)."""

    @property
    def main_metric(self) -> MainMetric | None:
        return MainMetric.from_dict(self.main) if self.main else None


@dataclass
class OptimiseSummary(Record):
    """A prompt optimisation on dev."""

    calls_spent: int = 0
    budget: int = 0
    dev_score: float = 0.0
    chosen: dict = field(default_factory=dict)
    """The chosen arm's fields."""
    trials: list = field(default_factory=list)


@dataclass
class TuningSummary(Record):
    """A fine-tune arm's search on dev: every trial, what it scored, which one was chosen."""

    trials: list = field(default_factory=list)
    """[{"options", "epochs", "dev_metrics": [[epoch, step, value]], "best", "seconds", "finished"}]."""
    chosen: dict = field(default_factory=dict)
    """The chosen trial's options."""
    chosen_dir: str = ""
    dev_metric: float | None = None
    """The chosen configuration's best dev metric."""
    seconds: float = 0.0
    """Wall time of the whole search (training + dev evaluations)."""
    epochs_trained: float = 0.0
    """Epochs trained over all trials: the search's cost in training passes."""

    def chosen_text(self) -> str:
        """The options that differed between trials, as chosen (`learning_rate=0.0006, epochs=2`)."""
        varied = {k for t in self.trials for k, v in t["options"].items() if v != self.trials[0]["options"].get(k)}
        shown = [f"{k}={self.chosen.get(k)}" for k in sorted(varied)] + [f"epochs={self.chosen.get('epochs')}"]
        return ", ".join(shown)


@dataclass
class ConsistencySummary(Record):
    agreement: float = 0.0
    std: float = 0.0
    metric: str = ""
    variant_runs: list = field(default_factory=list)
    values: list = field(default_factory=list)


@dataclass
class ProbeSummary(Record):
    """A serving probe (kind `probe`, `tuneoff.evaluate.probe`): the arm's requests timed as a server
    answers them, one at a time and `concurrency` at a time. The latency row, the latency constraint
    and the per-request cost read these figures, not the evaluation's batch wall times."""

    items: int = 0
    """Requests sent in each pass."""
    concurrency: int = 1
    """Requests answered together in the second pass."""
    engine: str = ""
    """What served the single requests (`transformers`, `llamacpp`, ...)."""
    single_p50: float = 0.0
    """Median seconds one request waits, sent alone (demo selection and prompt rendering included)."""
    single_p95: float = 0.0
    batched_p50: float = 0.0
    """Median seconds one request waits when `concurrency` arrive together (its micro-batch's wall time)."""
    batched_p95: float = 0.0
    throughput: float = 0.0
    """Requests per second at `concurrency`."""
    seconds_per_request: float = 0.0
    """Machine seconds per request at `concurrency` (1 / throughput): what hardware-mode cost charges."""
    tokens_in_mean: float = 0.0
    single_seconds: list = field(default_factory=list)
    """Each single request's latency, in item order (the report's latency chart)."""
    batched_seconds: list = field(default_factory=list)


@dataclass
class TrainStats(Record):
    """The training record of one fine-tune (also stored as metrics and in the run summary)."""

    steps: int
    """Optimizer steps done."""
    epochs: float
    """Passes over the training examples (fractional when max_steps or early stopping cut in)."""
    examples: int
    """Training examples kept after tokenization."""
    dropped_examples: int
    """Examples whose completion was cut away entirely by max_length (not trained on)."""
    prompt_truncated: int
    """Examples whose prompt lost its oldest tokens to fit max_length."""
    tokens: int
    """Non-padding tokens processed."""
    label_tokens: int
    """Tokens that carried loss (completion tokens by default)."""
    padded_tokens: int
    """Tokens processed including padding."""
    seconds: float
    """Training wall time (model loading and saving excluded), summed over resumed sessions."""
    tokens_per_second: float
    """Non-padding tokens per second of training."""
    flops: float
    """Estimated training FLOPs (see `finetune.methods.estimate_flops`)."""
    trainable_parameters: int
    total_parameters: int
    peak_memory_mb: float
    """CUDA: peak allocated by torch; CPU: the process's peak resident set (model load included)."""
    final_loss: float | None
    """Mean per-token training loss of the last optimizer step."""
    best_eval_loss: float | None = None
    best_step: int | None = None
    stopped_early: bool = False
    resumed_from_step: int | None = None
    best_dev_metric: float | None = None
    """Best dev main metric at an epoch end, when the run was selected by it (tuning)."""
    dev_metrics: list = field(default_factory=list)
    """(epoch, step, dev metric) at each epoch end."""
    processes: int = 1
    """Data-parallel training processes of the last session (each computed a part of every batch; the
    global batch, hence the optimisation, is the one-process run's). `seconds` is the main process's."""
    device: str = ""
    """Where the last session trained (`cpu`, `cuda:0`; the main process's under several)."""
    max_length: int = 0
    """Tokens of the longest example trained on (prompt + completion): what max_length came to."""
    truncated: int = 0
    """Examples that lost any token to max_length (prompt, completion, or dropped whole)."""

    @property
    def truncated_share(self) -> float:
        """Share of the training examples that lost tokens to max_length."""
        seen = self.examples + self.dropped_examples
        return self.truncated / seen if seen else 0.0

    def as_dict(self) -> dict:
        return self.to_dict()


@dataclass
class ExperimentSummary(Record):
    """`experiments.summary_json`: where the time went and how big the splits were."""

    phases: dict[str, float] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)
    """{"train", "dev", "test"}: items per split."""
    jobs: int = 1
    """Processes the experiment's units ran in (`tuneoff run --jobs N`, a Slurm array): with more than
    one, each phase sums its seconds over them, and `total` is the wall time from first start to last end."""
    peak_rss_mb: dict[str, float] = field(default_factory=dict)
    """Peak resident memory of the process during each phase, in MB (`tuneoff.memory`). Measured by a
    single-process `tuneoff run`; a sweep (`--jobs`, Slurm) records none (its processes differ)."""
    environment: dict[str, str | None] = field(default_factory=dict)
    """Where it ran (`models.environment.run_environment`): versions, CPU and GPU; empty in older stores."""


class StopReason(str, Enum):
    """Why an arm of an adaptive evaluation stopped scoring test items."""

    SETTLED_BELOW = "settled_below"
    """Its confidence sequence against the leader excluded 0: significantly below it."""
    EQUIVALENT = "equivalent"
    """Its confidence sequence against the leader lay inside the stated margin."""
    BEST = "best"
    """It led, and every other arm's comparison with it was settled."""
    REACHED_N_TEST = "reached_n_test"
    """It scored the whole test split."""


@dataclass
class AdaptiveStop(Record):
    """One arm of an adaptive evaluation: how many test items it scored and why it stopped there."""

    arm: str
    items: int
    """Test items it scored (a prefix of the shuffled order, shared with every arm that went on)."""
    n_test: int
    """Items in the test split: where every arm would have stopped."""
    reason: StopReason
    versus: str | None = None
    """The leader it was settled against (SETTLED_BELOW, EQUIVALENT)."""
    cs_low: float | None = None
    """Confidence sequence of versus - arm at the stop: lower end."""
    cs_high: float | None = None
    alpha: float = 0.05

    def __post_init__(self):
        self.reason = StopReason(self.reason)  # a stored string back to the enum

    @property
    def why(self) -> str:
        """The reason in words: `settled below lora`."""
        return {StopReason.SETTLED_BELOW: f"settled below {self.versus}",
                StopReason.EQUIVALENT: f"settled within the margin of {self.versus}",
                StopReason.BEST: "best, every other arm settled",
                StopReason.REACHED_N_TEST: "reached n_test"}[self.reason]

    def describe(self) -> str:
        """`64 of 200 items: settled below lora (lora - few-shot in [+0.051, +0.402], anytime-valid 95%)`."""
        why = self.why
        bounds = (f" ({self.versus} - {self.arm} in [{self.cs_low:+.3f}, {self.cs_high:+.3f}], "
                  f"anytime-valid {1 - self.alpha:.0%})" if self.cs_low is not None and self.versus else "")
        return f"{self.items} of {self.n_test} items: {why}{bounds}"


@dataclass
class AdaptiveSummary(Record):
    """An adaptive test evaluation (`adaptive:`; run kind `adaptive`): its settings and each arm's stop."""

    chunk: int = 0
    alpha: float = 0.05
    min_items: int = 0
    margin: float = 0.0
    seed: int = 0
    n_test: int = 0
    looks: int = 0
    """Looks taken (one after each chunk)."""
    stops: list = field(default_factory=list)
    """One `AdaptiveStop` dict per arm, in the experiment's arm order (see `stop`)."""

    def stop(self, arm: str) -> AdaptiveStop | None:
        found = next((s for s in self.stops if s["arm"] == arm), None)
        return AdaptiveStop.from_dict(found) if found else None

    @property
    def items_scored(self) -> int:
        """Test items scored over all arms (a plain evaluation scores n_test per arm)."""
        return sum(s["items"] for s in self.stops)


@dataclass
class ArmState(Record):
    """What the work on one arm of an experiment leaves for later work (its repeats, curve points,
    probes, the combined arms on its model): kept in memory by a single run, and in each finished
    unit's record (`UnitState`) for the units of a sweep that need it."""

    model: str | None = None
    """A fine-tune arm's trained (or tuning-chosen) model directory."""
    chosen: dict | None = None
    """A tuned fine-tune arm: the options its search chose (curve points and repeats train with them)."""
    prompt: dict | None = None
    """A searched prompt arm: the instruction and calibration its search chose."""

    def update(self, other: "ArmState") -> None:
        """Take what `other` knows (a unit that ran later on the same arm)."""
        for name in ("model", "chosen", "prompt"):
            if getattr(other, name) is not None:
                setattr(self, name, getattr(other, name))


@dataclass
class UnitState(Record):
    """What a unit produced (`experiment_units.state_json`), one record for the runner and the sweep:
    the states of the arms it worked on (so a unit in another process starts where a single run would
    be), the runs it linked and its timings."""

    arms: dict[str, ArmState] = field(default_factory=dict)
    """Arm name -> what this unit learnt about it (only the arms it changed)."""
    runs: list[Link] = field(default_factory=list)
    """The runs it linked to the experiment (evaluations, trainings, searches, probes), in order."""
    phases: dict[str, float] = field(default_factory=dict)
    """Seconds of each phase it timed (loads, training, evaluation, probes)."""

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "UnitState":
        if "arms" in data:
            return cls({name: ArmState.from_dict(state) for name, state in data["arms"].items()},
                       [Link(**link) for link in data.get("runs", [])], dict(data.get("phases", {})))
        # the layout before arm states (tuned / chosen / chosen_prompt maps): a sweep begun by an older tuneoff
        arms: dict[str, ArmState] = {}
        for key, field_name in (("tuned", "model"), ("chosen", "chosen"), ("chosen_prompt", "prompt")):
            for name, value in (data.get(key) or {}).items():
                setattr(arms.setdefault(name, ArmState()), field_name, value)
        return cls(arms)
