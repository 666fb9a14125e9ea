# PromptArm as YAML:  arms: [{name: cot, chain_of_thought: true, shots: 4, demo_selection: similar}]
"""What a prompt-engineering arm is, as data: one dataclass per concern.

`PromptArm` holds everything that defines a prompt arm (instruction, persona, demos, chain of
thought, decoding); `OptimiseSpec` the automatic search that may replace its instruction and demos;
`TaskContext` what an arm needs to know about its task (labels, metric, demo pool). All three are
plain typed dataclasses so `tuneoff.config.specs.from_dict` can build them from YAML with field-named errors.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Callable, Literal, Sequence

from ..data import Example
from ..errors import TuneoffError, did_you_mean
from ..models.chat import CompletionFormat, PromptFormat
from ..structured import OutputFormat
from .answers import EXTRACTORS
from .templates import Template

DemoSelection = Literal["first", "random", "stratified", "similar"]
DEFAULT_COT_PROMPT = ("Think step by step. Then give the final answer on its own line, "
                      "in the form 'The answer is X'.")


@dataclass(frozen=True)
class OptimiseSpec:
    """Automatic prompt optimisation: search instructions and bootstrapped demo sets on dev."""

    budget: int = 150
    """Most model requests the whole search may send (paraphrasing, bootstrapping, dev scoring)."""
    instructions: list[str] = field(default_factory=list)
    """Extra candidate instructions (Jinja2), tried beside the arm's own."""
    paraphrases: int = 2
    """Instruction paraphrases the model writes itself and that are then tried."""
    demo_sets: int = 2
    """Bootstrapped demo sets tried (each: demos the model answered correctly)."""
    shots: int | None = None
    """Demos per bootstrapped set; default: the arm's `shots`, or 4 when it has none."""
    bootstrap: int = 16
    """Training examples the model is run on to find demos it gets right."""
    dev_items: int = 40
    """Dev examples each candidate is scored on (the first ones of the dev split)."""
    shot_counts: list[int] = field(default_factory=list)
    """Demo counts tried under the best instruction, with the arm's own demo selection."""
    calibrations: list[str] = field(default_factory=list)
    """Score mode: calibration methods tried last (`none`, `contextual`, `pmi`)."""
    answer_formats: list[str] = field(default_factory=list)
    """Answer-format sentences (Jinja2, `labels` in scope) each tried appended to the instruction, right
    after the user's instructions: "Answer with one word." took SmolLM2-135M's SST-2 zero-shot from 0.565
    to 0.775 on the demo's test items (BENCHMARKS.md 8)."""
    label_words: list[dict] = field(default_factory=list)
    """Score mode: verbalisers tried under the best prompt ({label: word}, e.g. {positive: great,
    negative: terrible}); the labels themselves are always the first candidate."""
    paraphrase_temperature: float = 0.8
    """Sampling temperature for the model-written paraphrases (greedy would write one)."""
    seed: int = 0
    """Seed for sampling paraphrases and for drawing demo sets."""

    def __post_init__(self):
        for name in ("budget", "dev_items"):
            if getattr(self, name) < 1:
                raise TuneoffError("must be >= 1", field=f"optimise.{name}")
        for name in ("paraphrases", "demo_sets", "bootstrap"):
            if getattr(self, name) < 0:
                raise TuneoffError("must be >= 0", field=f"optimise.{name}")
        if self.shots is not None and self.shots < 1:
            raise TuneoffError("must be >= 1", field="optimise.shots")
        if self.paraphrase_temperature <= 0:
            raise TuneoffError("must be > 0 (paraphrases are sampled)", field="optimise.paraphrase_temperature")
        for i, source in enumerate(self.instructions):
            Template(source, f"optimise.instructions[{i}]")
        for i, source in enumerate(self.answer_formats):
            Template(source, f"optimise.answer_formats[{i}]")
        for i, words in enumerate(self.label_words):
            if not isinstance(words, dict) or not words:
                raise TuneoffError("must be a mapping {label: word}", field=f"optimise.label_words[{i}]",
                                   hint="e.g. {positive: great, negative: terrible}")
        if any(k < 0 for k in self.shot_counts):
            raise TuneoffError("must be >= 0", field="optimise.shot_counts")
        bad = [c for c in self.calibrations if c not in ("none", "contextual", "pmi")]
        if bad:
            raise TuneoffError(f"unknown calibration {bad[0]!r}", field="optimise.calibrations",
                               hint="none, contextual or pmi")


@dataclass(frozen=True)
class PromptArm:
    """One prompt-engineering arm: how an example becomes chat messages and how the reply is read."""

    name: str = "zero-shot"
    """Name in the store and the report."""
    instruction: str | None = None
    """Jinja2 template for the task instruction (variables: labels); default: the task's instruction."""
    system: str | None = None
    """Role/persona system message, a Jinja2 template (variables: labels, instruction); none by default."""
    instruction_in: Literal["user", "system"] = "user"
    """Where the instruction goes: before the first user message, or into the system message."""
    show_labels: bool | None = None
    """For label tasks, append 'Answer with one of: ...' (the label set) to the instruction. Default: when
    generating, yes; when scoring, no: the scoring already confines the answer to the set, and listing
    77 Banking77 intents would take a request from ~55 to ~600 tokens."""
    template: str = "{{ input }}"
    """Jinja2 template for one item's user turn (variables: input, labels, fields)."""
    shots: int = 0
    """Demos shown before the item (0 = zero-shot); with explicit `demos`, default all of them."""
    demo_selection: DemoSelection = "first"
    """How demos are drawn from the training pool: first k, seeded random, label-stratified, most similar."""
    demos: list[dict] | None = None
    """Explicit demos [{input: ..., target: ...}], used instead of drawing from the training pool."""
    demo_format: Literal["turns", "inline"] = "turns"
    """Demos as user/assistant turns, or inline in the user message through `demo_template`."""
    demo_template: str = "{{ item }}\n{{ answer }}"
    """Inline demos only: one demo (variables: item = the rendered `template`, answer, input, labels, fields)."""
    format: PromptFormat = "auto"
    """How a prompt reaches the model: `chat` messages; `completion` text a base model continues (the
    instruction, then one paragraph per demo, `{input_prefix} {item}\n{answer_prefix} {answer}`, then the
    item up to `answer_prefix`; the reply ends at a blank line or an echoed `input_prefix`); or `auto`:
    chat on chat models, completion on base models (`tuneoff.models.chat`)."""
    input_prefix: str = "Input:"
    """Completion format: the label before each item, e.g. `English:`."""
    answer_prefix: str = "Output:"
    """Completion format: the label before each answer, e.g. `French:`."""
    chain_of_thought: bool = False
    """Ask for step-by-step reasoning before 'The answer is X', and extract X."""
    cot_prompt: str = DEFAULT_COT_PROMPT
    """Chain of thought only: the cue appended to the user message (Jinja2, variables: labels)."""
    extractor: str = "auto"
    """How the answer is read from the reply: a name in `answers.EXTRACTORS`, or a regex (its first group,
    else the whole match)."""
    mode: Literal["generate", "score"] = "generate"
    """generate: decode and parse; score: pick the label with the highest log-likelihood (label tasks)."""
    score_norm: Literal["sum", "mean"] = "mean"
    """Score mode: rank labels by summed log-probability, or by its mean per token."""
    calibration: Literal["none", "contextual", "pmi"] = "none"
    """Score mode: correct the model's label prior (see `tuneoff.evaluate.calibration`): `contextual`
    divides out the label distribution of content-free inputs in the same prompt (Zhao et al. 2021),
    `pmi` subtracts the log-probability under an empty domain premise (Holtzman et al. 2021)."""
    label_words: dict[str, str] | None = None
    """Score mode: the word scored for each label (a verbaliser, e.g. {positive: great, negative:
    terrible}); the prediction is still the label. Labels not listed are scored as themselves."""
    score_end_of_turn: bool = True
    """Score mode: score each label followed by the end of the assistant turn, as fine-tuning trains it,
    so a label that only begins a longer reply ('card' of 'card arrival') gains nothing from that."""
    max_new_tokens: int | None = None
    """Generation cap; default 32, or 256 with chain of thought."""
    stop: list[str] = field(default_factory=list)
    """Strings that end a reply early."""
    temperature: float = 0.0
    """0 = greedy; above 0 samples (seeded by `seed`)."""
    constrained: bool = False
    """Constrained decoding: every reply is generated under the task's `output.schema` (local models:
    a JSON-Schema logits processor, lm-format-enforcer; served models: `response_format`)."""
    seed: int = 0
    """Seed for sampling and for random demo selection."""
    optimise: OptimiseSpec | None = None
    """Automatic prompt optimisation on dev before the arm is reported (see OptimiseSpec)."""
    paraphrases: list[str] = field(default_factory=list)
    """Instruction paraphrases (Jinja2) for the consistency check."""
    seeds: list[int] = field(default_factory=list)
    """Sampling seeds for the consistency check."""

    def __post_init__(self):
        if not self.name.strip():
            raise TuneoffError("an arm needs a name", field="name")
        if self.shots < 0:
            raise TuneoffError("must be >= 0", field="shots")
        if self.max_new_tokens is not None and self.max_new_tokens < 1:
            raise TuneoffError("must be >= 1", field="max_new_tokens")
        if self.temperature < 0:
            raise TuneoffError("must be >= 0", field="temperature")
        if self.mode != "score" and (self.calibration != "none" or self.label_words):
            raise TuneoffError("calibration and label_words apply to label scoring", field="calibration"
                               if self.calibration != "none" else "label_words", hint="use mode: score")
        if self.constrained and (self.mode == "score" or self.chain_of_thought):
            raise TuneoffError("constrained decoding generates the reply under a JSON Schema", field="constrained",
                               hint="use mode: generate without chain_of_thought")
        if self.mode == "score" and self.chain_of_thought:
            raise TuneoffError("score mode ranks labels directly; it cannot reason first", field="mode",
                               hint="use mode: generate with chain_of_thought, or drop chain_of_thought")
        self._check_demos()
        self._check_extractor()
        self._check_templates()
        self._check_completion()

    def _check_demos(self) -> None:
        if self.demos is None:
            return
        for i, demo in enumerate(self.demos):
            if not isinstance(demo, dict) or not {"input", "target"} <= set(demo):
                raise TuneoffError("each demo needs `input` and `target`", field=f"demos[{i}]")
        if self.shots > len(self.demos):
            raise TuneoffError(f"asks for {self.shots} demos but `demos` has {len(self.demos)}", field="shots")

    def _check_completion(self) -> None:
        for name in ("input_prefix", "answer_prefix"):
            value = getattr(self, name)
            if not value.strip() or "\n" in value:
                raise TuneoffError("must be a one-line label such as 'English:'", field=name)
        if self.format == "completion" and self.demo_format == "inline":
            raise TuneoffError("the completion format writes each demo as its own paragraph", field="demo_format",
                               hint="drop demo_format: inline, or use format: chat")

    @property
    def completion(self) -> CompletionFormat:
        """The arm's field labels for the completion format."""
        return CompletionFormat(self.input_prefix.strip(), self.answer_prefix.strip())

    def _check_extractor(self) -> None:
        if self.extractor in EXTRACTORS:
            return
        if re.fullmatch(r"\w+", self.extractor):  # a bare word is a misspelt name, not a regex
            raise TuneoffError(f"unknown extractor '{self.extractor}'", field="extractor",
                               hint=did_you_mean(self.extractor, list(EXTRACTORS)) + " (or give a regex)")
        try:
            re.compile(self.extractor)
        except re.error as exc:
            raise TuneoffError(f"invalid regex: {exc}", field="extractor") from None

    def _check_templates(self) -> None:
        """Syntax only; unknown variables are caught when the arm is prepared against a real example."""
        for name in ("instruction", "system", "template", "demo_template", "cot_prompt"):
            if getattr(self, name) is not None:
                Template(getattr(self, name), name)
        for i, source in enumerate(self.paraphrases):
            Template(source, f"paraphrases[{i}]")

    @property
    def lists_labels(self) -> bool:
        return self.mode == "generate" if self.show_labels is None else self.show_labels

    @property
    def new_tokens(self) -> int:
        return self.max_new_tokens or (256 if self.chain_of_thought else 32)

    @property
    def n_shots(self) -> int:
        """Demos actually shown: `shots`, or every explicit demo when `shots` is 0."""
        if self.demos is not None and self.shots == 0:
            return len(self.demos)
        return self.shots

    def replace(self, **changes) -> PromptArm:
        """A new arm with `changes` (validated again); this one is left as it was."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class TaskContext:
    """What an arm needs to know about its task beyond the items it runs on."""

    name: str = ""
    """Task name, for the store."""
    labels: tuple[str, ...] | None = None
    """The declared label set (classification), or None for free text."""
    metric: str = "accuracy"
    """Main metric, a name in `tuneoff.metrics.METRICS`."""
    secondary: tuple[str, ...] = ()
    """Further metrics scored on every item (rows of their own)."""
    instruction: str = ""
    """The task's default instruction (arms without their own use it)."""
    pool: tuple[Example, ...] = ()
    """Training examples demos are drawn from."""
    output: OutputFormat | None = None
    """The task's output constraints (JSON Schema, regex, word limit): replies are checked against them,
    and an arm with `constrained: true` decodes under the schema."""
    grounding: bool = False
    """Check replies for content their input does not support (on by default for free text)."""

    def __post_init__(self):
        from ..metrics import get_metric

        for name in (self.metric, *self.secondary):
            get_metric(name)  # unknown names fail here, with did-you-mean
        object.__setattr__(self, "secondary", tuple(self.secondary))
        if self.labels is not None:
            object.__setattr__(self, "labels", tuple(self.labels))
            if not self.labels:
                raise TuneoffError("a label set cannot be empty", field="labels")
        object.__setattr__(self, "pool", tuple(self.pool))

    @classmethod
    def of(cls, task) -> TaskContext:
        """From a loaded `TaskData`; a `TaskContext` passes through."""
        if isinstance(task, TaskContext):
            return task
        grounding = task.spec.grounding if task.spec.grounding is not None else not task.labels
        return cls(name=task.spec.name, labels=tuple(task.labels) if task.labels else None,
                   metric=task.spec.metric, secondary=tuple(task.spec.secondary_metrics),
                   instruction=task.spec.instruction, pool=tuple(task.train),
                   output=task.spec.output_format(), grounding=grounding)


CAP_SAMPLE = 500
"""Training targets a derived generation cap is measured on (the first ones: seeded splits, no cost)."""


def generation_cap(arm: PromptArm, ctx: TaskContext, count_tokens: Callable[[str], int]) -> int:
    """max_new_tokens of a generating arm: as set; for free text (no label set) left unset, from the
    training targets: 1.25 x their 95th-percentile length in the model's tokens, at least 32 (a fixed 32
    cut a fifth of DialogSum's test summaries); otherwise 32 (256 with chain of thought)."""
    if arm.max_new_tokens or arm.chain_of_thought or ctx.labels or not ctx.pool:
        return arm.new_tokens
    return _derived_cap(tuple(ex.target for ex in ctx.pool[:CAP_SAMPLE]), count_tokens)


@lru_cache(maxsize=32)
def _derived_cap(targets: tuple[str, ...], count_tokens: Callable[[str], int]) -> int:
    lengths = sorted(count_tokens(t) for t in targets)
    p95 = lengths[min(len(lengths) - 1, int(0.95 * len(lengths)))]
    return max(32, int(math.ceil(1.25 * p95 / 8)) * 8)  # a multiple of 8: caps read as round numbers


def demo_examples(demos: Sequence[dict]) -> list[Example]:
    """Explicit demos from an arm spec as Examples."""
    return [Example(input=str(d["input"]), target=str(d["target"]), id=f"demo:{i}") for i, d in enumerate(demos)]
