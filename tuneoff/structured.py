"""Output constraints and structured output: JSON Schema (jsonschema), a regex, a word limit; field scores.

A task may declare what its replies must look like (`output:` in the task). Every reply is checked and
each failed constraint is a named violation, so an arm's violation rate counts replies that break the
contract, not only empty ones. For JSON targets, `field_scores` compares the reply's fields with the
target's: precision/recall/F1 over (field path, value) leaves and, per field, whether it matched.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from .errors import TuneoffError

FENCE = re.compile(r"^```(?:json)?\s*|\s*```$", re.IGNORECASE)


def load_schema(path: str | Path) -> dict:
    """A JSON Schema from a .json or .yaml file; a file that does not parse or is not a valid schema
    raises a TuneoffError naming the file, line and field."""
    import jsonschema
    import yaml

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise TuneoffError(f"cannot read schema: {exc.strerror or exc}", file=str(path)) from None
    try:
        schema = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise TuneoffError(f"not valid JSON: {exc.msg}", file=str(path), line=exc.lineno) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise TuneoffError(f"not valid YAML: {getattr(exc, 'problem', exc)}", file=str(path),
                           line=mark.line + 1 if mark else None) from None
    check_schema(schema, file=str(path), text=text)
    return schema


def check_schema(schema: Any, *, file: str | None = None, text: str = "") -> None:
    """Raise a TuneoffError (file, line, field) when `schema` is not a valid JSON Schema."""
    import jsonschema

    if not isinstance(schema, dict):
        raise TuneoffError("a JSON Schema must be an object", file=file, line=1)
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    try:
        cls.check_schema(schema)
    except jsonschema.SchemaError as exc:
        path = ".".join(str(p) for p in exc.path) or "(root)"
        raise TuneoffError(f"not a valid JSON Schema: {exc.message}", file=file, field=path,
                           line=_line_of(text, list(exc.path))) from None


def _line_of(text: str, path: list) -> int | None:
    """Best-effort line of a schema path in its file: the line where its last named key is written."""
    keys = [p for p in path if isinstance(p, str)]
    if not text or not keys:
        return None
    pos = 0
    for key in keys:  # walk the keys in order so a later key is found below its parent
        m = re.search(r"[\"']?" + re.escape(key) + r"[\"']?\s*:", text[pos:])
        if not m:
            return None
        pos += m.start()
    return text.count("\n", 0, pos) + 1


@dataclass(frozen=True)
class OutputFormat:
    """What a reply must look like (a task's `output:` block). Every field is optional."""

    json_schema: dict | None = None
    """The reply is JSON valid against this schema (loaded from `schema: FILE` or given inline)."""
    regex: str | None = None
    """The whole reply (stripped) matches this regular expression."""
    max_words: int | None = None
    """The reply has at most this many words."""

    def __post_init__(self):
        if self.regex is not None:
            try:
                re.compile(self.regex)
            except re.error as exc:
                raise TuneoffError(f"not a valid regular expression: {exc}", field="output.regex") from None
        if self.max_words is not None and self.max_words < 1:
            raise TuneoffError("must be >= 1", field="output.max_words")
        if self.json_schema is not None:
            check_schema(self.json_schema)

    @classmethod
    def from_dict(cls, data: Mapping, base: Path | None = None) -> "OutputFormat":
        known = {"schema", "regex", "max_words"}
        unknown = set(data) - known
        if unknown:
            raise TuneoffError(f"unknown key(s) {sorted(unknown)}", field="output", hint=f"known: {sorted(known)}")
        schema = data.get("schema")
        if isinstance(schema, str):
            schema = load_schema((base or Path(".")) / schema)
        return cls(json_schema=schema, regex=data.get("regex"), max_words=data.get("max_words"))

    @property
    def schema_text(self) -> str | None:
        """The schema as canonical JSON (what a cache key and a decoding constraint carry)."""
        return json.dumps(self.json_schema, sort_keys=True) if self.json_schema is not None else None

    def violations(self, reply: str | None) -> list[str]:
        """Each constraint the reply breaks, named (empty list: the reply is in format)."""
        text = (reply or "").strip()
        out = []
        if not text:
            return ["empty"]
        if self.json_schema is not None:
            out += schema_violations(text, self.json_schema)
        if self.regex is not None and not re.fullmatch(self.regex, text, flags=re.DOTALL):
            out.append("regex")
        if self.max_words is not None and len(text.split()) > self.max_words:
            out.append("max_words")
        return sorted(out)


def parse_json(text: str | None) -> Any:
    """The JSON value of a reply (a ```json fence around it is allowed); raises ValueError otherwise."""
    return json.loads(FENCE.sub("", (text or "").strip()))


def schema_violations(text: str, schema: dict) -> list[str]:
    """`json` when the reply does not parse, else one `schema:PATH` per validation error."""
    import jsonschema

    try:
        value = parse_json(text)
    except ValueError:
        return ["json"]
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    return sorted({"schema:" + (".".join(str(p) for p in e.absolute_path) or "(root)")
                   for e in cls(schema).iter_errors(value)})


# -- field-level scores ------------------------------------------------------------------------------
def leaves(value: Any, prefix: str = "") -> dict[str, Any]:
    """Flatten JSON into {path: scalar}; list items are indexed (`items.0.name`)."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(leaves(v, f"{prefix}{k}."))
        return out
    if isinstance(value, list):
        out = {}
        for i, v in enumerate(value):
            out.update(leaves(v, f"{prefix}{i}."))
        return out
    return {prefix[:-1] or "(root)": value}


def _norm(value: Any) -> str:
    if isinstance(value, str):
        return " ".join(value.lower().split())
    return json.dumps(value)


@dataclass(frozen=True)
class FieldScores:
    """One reply against its JSON target: leaves matched exactly (after case/space normalisation)."""

    matched: int
    predicted: int
    expected: int
    per_field: dict[str, bool] = field(default_factory=dict)
    """Target leaf path -> matched (missing from the reply counts as not matched)."""
    parsed: bool = True

    @property
    def precision(self) -> float:
        return self.matched / self.predicted if self.predicted else 0.0

    @property
    def recall(self) -> float:
        return self.matched / self.expected if self.expected else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


def field_scores(reply: str | None, target: str) -> FieldScores:
    """Leaf-level precision/recall/F1 of a JSON reply against a JSON target (an unparseable reply
    matches nothing; a target that is not JSON is a data problem and raises ValueError)."""
    expected = leaves(parse_json(target))
    try:
        predicted = leaves(parse_json(reply))
    except ValueError:
        return FieldScores(0, 0, len(expected), {k: False for k in expected}, parsed=False)
    per = {k: k in predicted and _norm(predicted[k]) == _norm(v) for k, v in expected.items()}
    return FieldScores(sum(per.values()), len(predicted), len(expected), per)


def corpus_field_scores(replies: Sequence[str | None], targets: Sequence[str]) -> dict[str, float]:
    """Micro precision/recall/F1 over all leaves, and each field's match rate (`field:PATH`)."""
    scores = [field_scores(r, t) for r, t in zip(replies, targets)]
    m, p, e = (sum(s.matched for s in scores), sum(s.predicted for s in scores), sum(s.expected for s in scores))
    prec, rec = (m / p if p else 0.0), (m / e if e else 0.0)
    out = {"field_precision": prec, "field_recall": rec, "field_f1": 2 * prec * rec / (prec + rec) if prec + rec else 0.0}
    per: dict[str, list[bool]] = {}
    for s in scores:
        for k, ok in s.per_field.items():
            per.setdefault(k, []).append(ok)
    out.update({f"field:{k}": sum(v) / len(v) for k, v in sorted(per.items())})
    out.update(field_rouge(replies, targets))
    return out


def field_rouge(replies: Sequence[str | None], targets: Sequence[str]) -> dict[str, float]:
    """Mean ROUGE-L F (rouge-score, stemmed) per free-text field of the targets (`field_rougeL:PATH`): a
    summary inside JSON is judged as text, not by exact match. A field missing from a reply scores 0."""
    try:
        from rouge_score import rouge_scorer
    except ImportError:  # rouge-score comes with the free-text metrics; without it the exact-match rows stay
        return {}
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    sums: dict[str, list[float]] = {}
    for reply, target in zip(replies, targets):
        expected = leaves(parse_json(target))
        try:
            predicted = leaves(parse_json(reply))
        except ValueError:
            predicted = {}
        for path, value in expected.items():
            if isinstance(value, str) and len(value.split()) > 3:  # free text, not a code or a name
                got = predicted.get(path)
                score = scorer.score(value, got)["rougeL"].fmeasure if isinstance(got, str) else 0.0
                sums.setdefault(path, []).append(score)
    return {f"field_rougeL:{k}": sum(v) / len(v) for k, v in sorted(sums.items())}
