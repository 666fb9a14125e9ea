"""An LLM judge as configuration: which model grades, on what rubric, how, and what checks it.

Plain config dataclasses read from an experiment's `judge:` block; the grading and the judge's own
reliability figures live in `tuneoff.evaluate.judge`.

    judge:
      model: embedded:smollm2-135m-instruct     # or a local folder, or http://HOST:PORT/v1?model=NAME
      mode: pointwise                           # or pairwise (both orders; a position flip is a tie)
      scale: "1-5"                              # or pass/fail
      criteria: "faithful to the dialogue, covers its main point, concise"
      reference: true                           # show the reference answer to the judge
      items: 50                                 # test items judged per arm (the first n)
      ratings: human-ratings.jsonl              # optional: {"id", "arm", "rating"} per line
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ..errors import TuneoffError

SCALES = ("1-5", "pass/fail")
MODES = ("pointwise", "pairwise")


@dataclass
class JudgeSpec:
    """A judge pass over every arm's test outputs (its calls cached, stored and priced apart from the arms')."""

    model: str
    """Model spec of the judge: `embedded:NAME`, a local folder, `http://HOST:PORT/v1?model=NAME` or `openai:NAME`."""
    criteria: str = "correct, faithful to the input, complete and concise"
    """What the judge grades against (the rubric's criteria, in words)."""
    mode: Literal["pointwise", "pairwise"] = "pointwise"
    """`pointwise`: each output graded alone on `scale`; `pairwise`: two arms' outputs for the same item
    compared, once in each order (a verdict that follows the position is counted as a tie)."""
    scale: Literal["1-5", "pass/fail"] = "1-5"
    """Pointwise grades: an integer 1-5 or PASS/FAIL."""
    reference: bool = True
    """Show the reference answer in the judge's prompt (reference-guided grading)."""
    items: int = 50
    """Test items judged per arm (the first n of the test split; fewer when the arm scored fewer)."""
    pairs: list[list[str]] | None = None
    """Pairwise: the arm pairs to compare (default: every pair of arms)."""
    repeat_items: int = 20
    """Items judged a second time, sampled at `repeat_temperature`, for the self-agreement figure (0: off).
    A greedy repeat would always agree; a sampled one shows how firm the judge's verdict is."""
    repeat_temperature: float = 0.7
    """Temperature of the repeat."""
    retries: int = 1
    """Off-format verdicts asked again (sampled, seeded) at most this many times; then counted off-format."""
    max_new_tokens: int = 8
    """Tokens a verdict may take (a grade, PASS/FAIL or A/B/TIE)."""
    ratings: str | None = None
    """Human ratings file (CSV/TSV or JSONL with `id`, `arm`, `rating`): the judge's agreement with them
    is reported. Ids must be test items' ids; never put model-made ratings here."""
    input_per_1k_tokens: float | None = None
    """$ per 1k input tokens of a hosted judge (with `output_per_1k_tokens`); default: the experiment's
    machine price x the judge's measured time."""
    output_per_1k_tokens: float | None = None
    """$ per 1k output tokens of a hosted judge."""
    base_dir: str = field(default=".", repr=False)
    """Folder relative paths (ratings) are read from: the experiment file's."""

    def __post_init__(self):
        if self.mode not in MODES:
            raise TuneoffError(f"unknown mode '{self.mode}'", field="judge.mode", hint=f"one of {', '.join(MODES)}")
        if self.scale not in SCALES:
            raise TuneoffError(f"unknown scale '{self.scale}'", field="judge.scale",
                               hint=f"one of {', '.join(SCALES)}")
        for name in ("items", "max_new_tokens"):
            if getattr(self, name) < 1:
                raise TuneoffError("must be >= 1", field=f"judge.{name}")
        for name in ("repeat_items", "retries"):
            if getattr(self, name) < 0:
                raise TuneoffError("must be >= 0", field=f"judge.{name}")
        if not self.criteria.strip():
            raise TuneoffError("must say what the judge grades", field="judge.criteria")
        if not 0 < self.repeat_temperature <= 2:
            raise TuneoffError("must be in (0, 2]", field="judge.repeat_temperature")
        for pair in self.pairs or []:
            if len(pair) != 2 or pair[0] == pair[1]:
                raise TuneoffError(f"a pair names two different arms, got {pair}", field="judge.pairs")
        if (self.input_per_1k_tokens is None) != (self.output_per_1k_tokens is None):
            raise TuneoffError("give both input_per_1k_tokens and output_per_1k_tokens, or neither",
                               field="judge.input_per_1k_tokens")

    def check_arms(self, arms: list[str]) -> None:
        """Pairs must name arms of the experiment."""
        from ..errors import did_you_mean

        for pair in self.pairs or []:
            for name in pair:
                if name not in arms:
                    raise TuneoffError(f"no arm named '{name}'", field="judge.pairs", hint=did_you_mean(name, arms))
