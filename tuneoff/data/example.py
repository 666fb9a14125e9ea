"""What every data file becomes: `Example`s, read through a `ColumnMapping`.

    from tuneoff.data import ColumnMapping, load_dataset
    mapping = ColumnMapping("sentence|content", "label", {"0": "negative", "1": "positive"})
    examples = load_dataset("sst2/train.tsv", mapping)
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..errors import TuneoffError


@dataclass(frozen=True)
class Example:
    """One task item, whatever file it came from.

    Prompting strategies turn it into chat messages; fine-tuning turns it into prompt/completion
    tokens. `input` is what the user says, `target` what a perfect model answers.
    """

    input: str
    """The final user turn: a prompt, the joined input columns of a CSV row, or the chat's last user message."""
    target: str
    """The expected answer: the completion, the label name, or the final assistant message."""
    context: tuple[dict, ...] = ()
    """Chat messages that come before `input` (system prompt, earlier turns); empty for flat data."""
    fields: dict = field(default_factory=dict, compare=False, hash=False)
    """The original columns/keys (strings), for templates that refer to them by name."""
    source: str = ""
    """File the example was read from."""
    line: int = 0
    """1-based line in that file where the record starts, for error messages."""
    id: str = ""
    """Stable identifier unless the data gives one: `<file stem>:<line>` for JSONL and CSV/TSV,
    `<file stem>#<n>` for the n-th record of a JSON array (its layout is not its content)."""
    record: int | None = None
    """1-based position in a JSON array (several records may share a line); None for line formats."""
    references: tuple[str, ...] = ()
    """Every reference answer when the data gives several (`target` is the first; demos and training
    use it); empty: `target` is the only one."""

    def refs(self) -> tuple[str, ...]:
        """The reference answers reference metrics score against (at least `target`)."""
        return self.references or (self.target,)

    def where(self) -> str:
        """`line 3`, or `record 2 (line 1)` inside a JSON array: how messages point at this example."""
        return f"line {self.line}" if self.record is None else f"record {self.record} (line {self.line})"


DEFAULT_INPUT = "prompt|input|text|sentence|content|question"
"""Input key/column when none is given: the first of these present (OpenAI, HF, GLUE, GSM8K names)."""
DEFAULT_TARGET = "completion|target|output|label|category|answer"
"""Target key/column when none is given: the first of these present."""
ROLES = ("system", "developer", "user", "assistant")
"""Chat roles a message may have; `developer` is OpenAI's newer name for `system`."""


@dataclass(frozen=True)
class ColumnMapping:
    """Which columns (CSV/TSV) or keys (flat JSON/JSONL) hold the input, target and id.

    Chat records (`{"messages": [...]}`) ignore `input`/`target`; the label map applies to all.
    """

    input: str | None = None
    """Input column(s): `a|b` takes the first present (SST-2's `sentence|content`), `a,b` joins
    several as `a: value` lines; None: DEFAULT_INPUT."""
    target: str | None = None
    """Target column, `a|b` allowed; `a,b,c`: several reference columns (the first is the target demos
    and training use); a column holding a JSON list of strings is a list of references; None: DEFAULT_TARGET."""
    label_map: dict[str, str] | None = None
    """Raw target -> label name, e.g. {"0": "negative", "1": "positive"}; a raw value not in it is a
    LabelOutsideSet problem."""
    id: str | None = None
    """Column holding a stable example id; None: `<file stem>:<line>`."""

    def __post_init__(self):
        for name in ("input", "target"):
            spec = getattr(self, name)
            if spec is not None and any(not alt.strip() for group in spec.split(",") for alt in group.split("|")):
                raise TuneoffError(f"empty column name in '{spec}'", field=name,
                                   hint="write `a|b` for alternatives, `a,b` to join several columns")
        if self.id is not None and (not self.id.strip() or set(self.id) & {",", "|"}):
            raise TuneoffError(f"an id is one column, got '{self.id}'", field="id")
        if self.label_map is not None:
            object.__setattr__(self, "label_map", {str(k): str(v) for k, v in self.label_map.items()})

    def input_groups(self) -> list[list[str]]:
        """Input columns, each a list of alternatives."""
        return [[alt.strip() for alt in group.split("|")] for group in (self.input or DEFAULT_INPUT).split(",")]

    def target_alternatives(self) -> list[str]:
        """The first (main) target column's alternatives."""
        return self.target_groups()[0]

    def target_groups(self) -> list[list[str]]:
        """Reference columns, each a list of alternatives (one group unless several references are named)."""
        return [[alt.strip() for alt in group.split("|")] for group in (self.target or DEFAULT_TARGET).split(",")]


def looks_like_labels(targets: Sequence[str]) -> bool:
    """Targets are class labels when there are few distinct values, each repeated on average."""
    distinct = len(set(targets))
    return 0 < distinct <= 100 and distinct * 2 <= len(targets)


def digest(examples: Sequence[Example]) -> str:
    """A hash of examples' ids, inputs and targets, in order: "same data" for caches and model reuse."""
    # extra references join the blob only when there are several: one-reference digests stay as they were
    blob = "\x1e".join(f"{ex.id}\x1f{ex.input}\x1f{ex.target}" + ("\x1f" + "\x1d".join(ex.references)
                                                                     if len(ex.references) > 1 else "")
                        for ex in examples)
    return hashlib.sha256(blob.encode()).hexdigest()
