"""Grounding of free text: content an output states that its input (or any reference) does not support.

The rule (README "Grounding"): an output's *content units* are
  - numbers (digits, "3.5", "1,200"; number words zero-twenty count as their digits),
  - times and dates written with digits ("10:30", "2/14"),
  - speaker tags such as DialogSum's `#Person1#`,
  - names: capitalised words, except common English words that open sentences ("The", "She",
    "After", a list in this module) and the pronoun "I",
  - quoted strings ("..." or “...”).
A unit is *supported* by a text when that text contains it: numbers by value, names and tags as whole
words ignoring case ("Paris" is supported by "paris", "Tom's" by "Tom"), quoted strings as substrings
after lower-casing and collapsing spaces. An output is *ungrounded* when one of its units is supported
by no input; unsupported-by-references is counted separately (a reference may paraphrase, so that count
is a softer signal). Lexical support is deliberately literal: it misses paraphrased inventions ("a
dozen" for 13) and flags correct inferences (a sum of two stated prices); it finds what the field calls
extrinsic hallucination of entities and numbers (Maynez et al. 2020) at no model cost.

Data-to-text: `slot_coverage` checks the fields of a structured input against the output: a field is
*covered* when its value is stated, *contradicted* when it is not but another value that the same field
takes elsewhere in the data is (priceRange "cheap" in, "expensive" out), else *missing*.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

NUMBER_WORDS = {w: str(i) for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen"
    " seventeen eighteen nineteen twenty".split())}
# sentence starters that are capitalised by position, not because they name something
COMMON = set("""a an the this that these those there here it its he she they we you i his her their our your my
him them us me who what when where why how which whose whom if then so but and or nor yet because since after
before while although though as at in on of for with by from to into onto about above below over under between
during without within also both each every all any some many most much more less few several no not one
finally later first next today tomorrow yesterday now however meanwhile instead still eventually suddenly
mr mrs ms dr please yes ok okay oh well hi hello thanks thank sorry good great let lets maybe perhaps
people person everyone someone anyone nobody somebody other another such same despite having being
unfortunately luckily besides moreover therefore thus afterwards overall neither either everybody nothing
something everything only even just again soon once until unless whether""".split())
# units: speaker tags, times/dates with digits, numbers, quoted strings, capitalised words
TAG = re.compile(r"#[A-Za-z]+\d*#")
TIME_OR_DATE = re.compile(r"\b\d{1,4}(?:[:/-]\d{1,4}){1,2}\b")
NUMBER = re.compile(r"(?<![\w#])-?\d[\d,]*(?:\.\d+)?")
QUOTED = re.compile(r"\"([^\"\n]{2,80})\"|“([^”\n]{2,80})”")
WORD = re.compile(r"[A-Za-z][A-Za-z'’-]*")


@dataclass(frozen=True)
class Unit:
    """One checkable piece of content an output states."""

    kind: str
    """`number`, `date`, `tag`, `name` or `quote`."""
    text: str
    """As written in the output."""

    def key(self) -> str:
        """What support is checked on: a number's value, a name or tag in lower case, a quote's words."""
        if self.kind == "number":
            return _number_key(self.text)
        return " ".join(self.text.lower().split())


def _number_key(text: str) -> str:
    text = NUMBER_WORDS.get(text.lower(), text).replace(",", "")
    try:
        value = float(text)
    except ValueError:
        return text
    return str(int(value)) if value == int(value) else repr(value)


def _strip_possessive(word: str) -> str:
    return re.sub(r"['’]s$", "", word).strip("'’-")


def content_units(text: str) -> list[Unit]:
    """The units an output states, in order (duplicates kept once)."""
    units: list[Unit] = []
    for m in QUOTED.finditer(text):
        units.append(Unit("quote", m.group(1) or m.group(2)))
    rest = QUOTED.sub(" ", text)
    for m in TAG.finditer(rest):
        units.append(Unit("tag", m.group(0)))
    rest = TAG.sub(" ", rest)
    for m in TIME_OR_DATE.finditer(rest):
        units.append(Unit("date", m.group(0)))
    rest = TIME_OR_DATE.sub(" ", rest)
    for m in NUMBER.finditer(rest):
        units.append(Unit("number", m.group(0).rstrip(",")))
    for m in WORD.finditer(rest):
        word = _strip_possessive(m.group(0))
        if not word:
            continue
        if word.lower() in NUMBER_WORDS:
            units.append(Unit("number", word))
        elif word[0].isupper() and not _positional(word):
            units.append(Unit("name", word))
    seen: set[tuple[str, str]] = set()
    return [u for u in units if (u.kind, u.key()) not in seen and not seen.add((u.kind, u.key()))]


def _positional(word: str) -> bool:
    """A capital that comes from grammar, not from a name: "I", or a common word (which opens sentences)."""
    return word == "I" or word.lower() in COMMON


@dataclass(frozen=True)
class Support:
    """What a text offers as support: its numbers by value, its words and tags, its normalised text."""

    numbers: frozenset[str]
    words: frozenset[str]
    flat: str

    @classmethod
    def of(cls, texts: Iterable[str]) -> "Support":
        texts = [t for t in texts if t]
        joined = "\n".join(texts)
        numbers = {_number_key(m.group(0).rstrip(",")) for m in NUMBER.finditer(TIME_OR_DATE.sub(" ", joined))}
        words = {_strip_possessive(w).lower() for w in WORD.findall(joined)}
        numbers |= {NUMBER_WORDS[w] for w in words if w in NUMBER_WORDS}
        words |= {t.lower() for t in TAG.findall(joined)}
        return cls(frozenset(numbers), frozenset(words), " ".join(joined.lower().split()))

    def supports(self, unit: Unit) -> bool:
        key = unit.key()
        if unit.kind == "number":
            return key in self.numbers
        if unit.kind in ("name", "tag"):
            return key in self.words
        return key in self.flat  # dates as written, quotes as substrings


@dataclass(frozen=True)
class Grounding:
    """One output's units and which of them nothing supports."""

    units: tuple[Unit, ...]
    unsupported_by_input: tuple[Unit, ...]
    unsupported_by_references: tuple[Unit, ...]

    @property
    def ungrounded(self) -> bool:
        """The output states something its input does not: the per-item flag a rate is taken over."""
        return bool(self.unsupported_by_input)

    def to_dict(self) -> dict:
        return {"units": len(self.units),
                "unsupported_input": [u.text for u in self.unsupported_by_input],
                "unsupported_references": [u.text for u in self.unsupported_by_references]}


def ground(output: str | None, inputs: str | Sequence[str], references: Sequence[str] = ()) -> Grounding:
    """Check one output against its input text(s) and, separately, its references."""
    units = tuple(content_units(output or ""))
    src = Support.of([inputs] if isinstance(inputs, str) else inputs)
    refs = Support.of(references)
    return Grounding(units, tuple(u for u in units if not src.supports(u)),
                     tuple(u for u in units if references and not refs.supports(u)))


@dataclass(frozen=True)
class GroundingSummary:
    """Per-arm figures (lower is better for both rates)."""

    ungrounded_rate: float
    """Share of outputs stating at least one unit their input does not support."""
    unsupported_unit_share: float
    """Unsupported units / all units, over the arm's outputs."""
    unreferenced_rate: float | None
    """Share of outputs with a unit no reference supports (None without references)."""
    n: int
    examples: list[str] = field(default_factory=list)
    """A few unsupported units, for the report."""


def summarise_grounding(results: Sequence[Grounding], with_references: bool) -> GroundingSummary:
    n = len(results)
    units = sum(len(g.units) for g in results)
    bad = sum(len(g.unsupported_by_input) for g in results)
    examples = [u.text for g in results for u in g.unsupported_by_input][:8]
    return GroundingSummary(
        ungrounded_rate=sum(g.ungrounded for g in results) / n if n else 0.0,
        unsupported_unit_share=bad / units if units else 0.0,
        unreferenced_rate=(sum(bool(g.unsupported_by_references) for g in results) / n if n else 0.0)
        if with_references else None, n=n, examples=examples)


# -- data-to-text: slots ----------------------------------------------------------------------------
SLOT = re.compile(r"([A-Za-z_][\w ]*?)\s*\[([^\]]*)\]")


def parse_slots(text: str) -> dict[str, str]:
    """Fields of a structured input: a JSON object (flat values), `key[value]` pairs (E2E style), or
    `key: value` lines. Empty when the input has none of these shapes."""
    text = text.strip()
    if text.startswith("{"):
        try:
            obj = json.loads(text)
        except ValueError:
            obj = None
        if isinstance(obj, dict):
            return {str(k): str(v) for k, v in obj.items() if isinstance(v, (str, int, float)) and str(v).strip()}
    pairs = SLOT.findall(text)
    if pairs:
        return {k.strip(): v.strip() for k, v in pairs if v.strip()}
    lines = [ln.split(":", 1) for ln in text.splitlines() if ":" in ln]
    keys = [k.strip() for k, _ in lines]
    # a dialogue ("#Person1#: ...") repeats its speakers: turns, not fields
    if len(lines) < 2 or len(set(keys)) < len(keys) or not all(re.fullmatch(r"[A-Za-z_][\w ]{0,40}", k) for k in keys):
        return {}
    return {k.strip(): v.strip() for k, v in lines if k.strip() and v.strip()}


def _states(output: str, value: str) -> bool:
    value_norm = " ".join(value.lower().split())
    out = " ".join(output.lower().split())
    if re.fullmatch(r"-?\d[\d,]*(?:\.\d+)?", value_norm):
        return _number_key(value_norm) in {_number_key(n) for n in NUMBER.findall(out)}
    return re.search(r"(?<!\w)" + re.escape(value_norm) + r"(?!\w)", out) is not None


@dataclass(frozen=True)
class SlotCoverage:
    """One output's fields: stated, contradicted (another value of the field stated), or missing."""

    covered: tuple[str, ...]
    contradicted: tuple[str, ...]
    missing: tuple[str, ...]

    @property
    def total(self) -> int:
        return len(self.covered) + len(self.contradicted) + len(self.missing)


def field_values(inputs: Iterable[str]) -> dict[str, set[str]]:
    """Every value each field takes across a split's inputs (what "another value" can be)."""
    values: dict[str, set[str]] = {}
    for text in inputs:
        for key, value in parse_slots(text).items():
            values.setdefault(key, set()).add(value)
    return values


def slot_coverage(output: str | None, slots: Mapping[str, str],
                  vocabulary: Mapping[str, set[str]] | None = None) -> SlotCoverage:
    covered, contradicted, missing = [], [], []
    for key, value in slots.items():
        if _states(output or "", value):
            covered.append(key)
        elif any(_states(output or "", other) for other in (vocabulary or {}).get(key, ()) if other != value):
            contradicted.append(key)
        else:
            missing.append(key)
    return SlotCoverage(tuple(covered), tuple(contradicted), tuple(missing))
