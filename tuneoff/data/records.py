"""One record -> one `Example`: flat records (CSV rows, JSON objects) and chat records.

A chat record `{"messages": [...]}` (OpenAI fine-tuning format) gives its last message as the
target, the user message right before it as the input, everything earlier as `context`. A flat
record's input and target are the keys or columns a `ColumnMapping` names. The file formats that
produce records are in `readers.py`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import Kind, Problem, did_you_mean, problem
from .example import ColumnMapping, Example

ROLES = ("system", "developer", "user", "assistant")
"""Chat roles a message may have; `developer` is OpenAI's newer name for `system`."""


class RecordReader:
    """Turns the records of one file into examples, collecting problems as it goes."""

    def __init__(self, path: Path, mapping: ColumnMapping):
        self.file = str(path)
        self.stem = path.stem
        self.mapping = mapping
        self.problems: list[Problem] = []
        self.examples: list[Example] = []
        self.position: int | None = None
        """1-based position of the JSON array element being read; None for line formats. Several
        elements may share a line, so ids and problems need it beside the line."""

    def report(self, kind: Kind, line: int, message: str, field: str | None = None) -> None:
        self.problems.append(problem(kind, self.file, line, message, field, self.position))

    # ---- text values

    def text(self, value: Any, line: int, field: str, allow_int: bool = True) -> str | None:
        """A non-empty string, or None after reporting why not. Integers (label ids) become strings."""
        if allow_int and isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            self.report(Kind.NonStringContent, line, f"expected a string, got {json_type(value)}", field)
            return None
        if not value.strip():
            self.report(Kind.EmptyField, line, "empty" if not value else "only whitespace", field)
            return None
        return value

    def label(self, raw: str, line: int, field: str) -> str | None:
        label_map = self.mapping.label_map
        if label_map is None:
            return raw
        if raw not in label_map:
            self.report(Kind.LabelOutsideSet, line, f"'{raw}' is not in the label map "
                                                    f"({', '.join(label_map)})", field)
            return None
        return label_map[raw]

    def add(self, line: int, input: str, target: str, record: dict, context: tuple[dict, ...] = (),
            references: tuple[str, ...] = ()) -> None:
        fields = {k: v if isinstance(v, str) else json.dumps(v) for k, v in record.items() if k != "messages"}
        id_: str | None = f"{self.stem}:{line}" if self.position is None else f"{self.stem}#{self.position}"
        if self.mapping.id is not None:
            if self.mapping.id not in record:  # CSV headers are checked once, before any row
                self.report(Kind.MissingField, line, f"no id key '{self.mapping.id}'", self.mapping.id)
                return
            id_ = self.text(record[self.mapping.id], line, self.mapping.id)
        if id_ is not None:
            self.examples.append(Example(input, target, context, fields, self.file, line, id_, self.position,
                                         references if len(references) > 1 else ()))

    # ---- flat records (CSV rows, JSON objects with input/target keys)

    def flat(self, record: dict, line: int, inputs: list[str], target_keys: list[str]) -> None:
        values = [(key, self.text(record[key], line, key)) for key in inputs]
        # a column named twice (`a|x, b|x` in a file that has only x) is one reference; equal texts from
        # different columns stay (TER averages the references' lengths, duplicates included)
        refs = [ref for key in dict.fromkeys(target_keys) for ref in self.references(record[key], line, key)]
        if any(v is None for _, v in values) or not refs or None in refs:
            return
        target = self.label(refs[0], line, target_keys[0])
        if target is None:
            return
        text = values[0][1] if len(values) == 1 else "\n".join(f"{k}: {v}" for k, v in values)
        self.add(line, text, target, record, references=(target, *refs[1:]))

    def references(self, value: Any, line: int, field: str) -> list[str | None]:
        """A reference column's texts: one string, or a JSON list of strings (several references); each
        empty or non-string one is reported with its field."""
        if not isinstance(value, list):
            return [self.text(value, line, field)]
        if not value:
            self.report(Kind.EmptyField, line, "an empty list of references", field)
            return [None]
        return [self.text(v, line, f"{field}[{k}]") for k, v in enumerate(value)]

    def keys(self, present: dict | list[str], line: int, kind: Kind) -> tuple[list[str], list[str]] | None:
        """The input keys and the target (reference) keys found in `present`, or None after reporting each
        one missing."""
        targets = self.mapping.target_groups()
        groups = self.mapping.input_groups() + targets
        chosen = [next((k for k in alternatives if k in present), None) for alternatives in groups]
        for alternatives, key in zip(groups, chosen):
            if key is None:
                others = f" (nor {', '.join(alternatives[1:])})" if len(alternatives) > 1 else ""
                hint = closest(alternatives, list(present))
                self.report(kind, line, f"no '{alternatives[0]}'{others}; {hint}", alternatives[0])
        if None in chosen:
            return None
        return chosen[:-len(targets)], chosen[-len(targets):]

    def record(self, record: Any, line: int, position: int | None = None) -> None:
        """One JSON record: chat when it has `messages`, else flat keys. `position`: see `self.position`."""
        self.position = position
        if not isinstance(record, dict):
            self.report(Kind.NotAnObject, line, f"a record must be a JSON object, got {json_type(record)}")
        elif "messages" in record:
            self.chat(record, line)
        elif (keys := self.keys(record, line, Kind.MissingField)) is not None:
            self.flat(record, line, *keys)

    # ---- chat records

    def chat(self, record: dict, line: int) -> None:
        messages = record["messages"]
        if not isinstance(messages, list):
            self.report(Kind.WrongType, line, f"expected a list of messages, got {json_type(messages)}",
                        "messages")
            return
        if not messages:
            self.report(Kind.EmptyField, line, "no messages", "messages")
            return
        turns = [self.message(m, line, f"messages[{i}]") for i, m in enumerate(messages)]
        if any(t is None for t in turns):
            return
        if turns[-1]["role"] != "assistant":
            self.report(Kind.NoAssistantTurn, line, f"the last message is from '{turns[-1]['role']}'; "
                        "a chat ends with the assistant message to learn", f"messages[{len(turns) - 1}]")
            return
        if len(turns) < 2 or turns[-2]["role"] != "user":
            role = f"'{turns[-2]['role']}'" if len(turns) > 1 else "nothing"
            self.report(Kind.NoUserTurn, line, f"the final assistant message follows {role}, "
                        "not a user message", f"messages[{len(turns) - 2}]" if len(turns) > 1 else "messages")
            return
        target = self.label(turns[-1]["content"], line, f"messages[{len(turns) - 1}].content")
        if target is not None:
            self.add(line, turns[-2]["content"], target, record, tuple(turns[:-2]))

    def message(self, message: Any, line: int, field: str) -> dict | None:
        if not isinstance(message, dict):
            self.report(Kind.NotAnObject, line, f"a message must be an object, got {json_type(message)}", field)
            return None
        for key in ("role", "content"):
            if key not in message:
                self.report(Kind.MissingField, line, f"the message has no '{key}'", f"{field}.{key}")
        if "role" not in message or "content" not in message:
            return None
        role = message["role"]
        if role not in ROLES:
            hint = did_you_mean(str(role), list(ROLES)) if isinstance(role, str) else f"known: {', '.join(ROLES)}"
            self.report(Kind.UnknownRole, line, f"unknown role {json.dumps(role)}; {hint}", f"{field}.role")
            return None
        content = self.text(message["content"], line, f"{field}.content", allow_int=False)
        if content is None:
            return None
        # one name for the system prompt downstream: prompting and chat templates know `system`
        return {"role": "system" if role == "developer" else role, "content": content}


def closest(alternatives: list[str], present: list[str]) -> str:
    # a hostile header or key can be megabytes long, or a million names: difflib on those never ends
    present = [name if len(name) <= 80 else name[:77] + "..." for name in present[:100]]
    hints = [did_you_mean(name, present) for name in alternatives] if present else ["there are none"]
    return next((h for h in hints if h.startswith("did you mean")), hints[0])


def json_type(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null",
             int: "a number", float: "a number"}
    return names.get(type(value), type(value).__name__)
