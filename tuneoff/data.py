"""Examples in: one `Example` form from prompt/completion JSON(L), chat JSONL and CSV/TSV.

(Loaders and splits are built out in this module; validation lives in `tuneoff.validation`.)
"""

from __future__ import annotations

from dataclasses import dataclass, field


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
    """1-based line (record) in that file, for error messages."""
    id: str = ""
    """Stable identifier: `<file stem>:<line>` unless the data gives one."""
