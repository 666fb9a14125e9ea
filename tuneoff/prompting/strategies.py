"""Prompting strategies: small objects that turn (example, demos) into chat messages.

`ZeroShot` writes the instruction and the item; `FewShot` puts demos before it (as turns or
inline); `ChainOfThought` adds the reasoning cue; `Role` adds a system persona. They wrap each
other, so any combination is a composition, built by `build_strategy` from a `PromptArm`.
`prepare` binds an arm to its task and checks every template against a real example before any
model call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

from ..data import Example
from ..errors import TuneoffError
from ..models.base import Message
from .answers import answer_after_cue
from .arm import PromptArm, TaskContext, demo_examples
from .demos import DemoSelector, make_selector
from .templates import Template


class Strategy(Protocol):
    def messages(self, example: Example, demos: Sequence[Example]) -> list[Message]:
        """The chat messages for `example`, with `demos` shown first."""


def _join(*parts: str) -> str:
    return "\n\n".join(p for p in parts if p)


def _variables(example: Example, labels: Sequence[str] | None) -> dict:
    # the target is deliberately absent: an item's own answer must never reach its prompt
    return {"input": example.input, "labels": list(labels or []), "fields": dict(example.fields)}


@dataclass(frozen=True)
class ZeroShot:
    """The instruction, then the item."""

    item: Template
    instruction: str
    labels: tuple[str, ...] | None = None

    def text(self, example: Example) -> str:
        return self.item.render(_variables(example, self.labels))

    def messages(self, example: Example, demos: Sequence[Example] = ()) -> list[Message]:
        return [*example.context, {"role": "user", "content": _join(self.instruction, self.text(example))}]


@dataclass(frozen=True)
class FewShot:
    """Demos before the item: user/assistant turns (the instruction opens the first), or inline."""

    base: ZeroShot
    inline: Template | None = None
    """`demo_template` when demos are inline in the user message; None for turns."""

    def messages(self, example: Example, demos: Sequence[Example]) -> list[Message]:
        if not demos:
            return self.base.messages(example)
        if self.inline is not None:
            blocks = [self.inline.render({**_variables(d, self.base.labels), "item": self.base.text(d),
                                          "answer": d.target}) for d in demos]
            text = _join(self.base.instruction, *blocks, self.base.text(example))
            return [*example.context, {"role": "user", "content": text}]
        turns: list[Message] = []
        for i, demo in enumerate(demos):
            # the instruction is said once, at the start: repeating it per demo multiplies its tokens
            user = _join(self.base.instruction, self.base.text(demo)) if i == 0 else self.base.text(demo)
            turns += [{"role": "user", "content": user}, {"role": "assistant", "content": demo.target}]
        return [*turns, *example.context, {"role": "user", "content": self.base.text(example)}]


def _reasoned(demo: Example) -> Example:
    # a demo for a reasoning prompt must end the way the model is asked to end
    if answer_after_cue(demo.target) is not None:
        return demo
    answer = demo.target.strip()
    answer = f"The answer is {answer}" + ("" if answer.endswith(".") else ".")
    return Example(input=demo.input, target=answer, context=demo.context,
                   fields=demo.fields, source=demo.source, line=demo.line, id=demo.id)


@dataclass(frozen=True)
class ChainOfThought:
    """Ask for step-by-step reasoning that ends in 'The answer is X' (read back by the extractor)."""

    inner: Strategy
    cue: str

    def messages(self, example: Example, demos: Sequence[Example]) -> list[Message]:
        messages = self.inner.messages(example, [_reasoned(d) for d in demos])
        last = messages[-1]
        return [*messages[:-1], {"role": last["role"], "content": _join(last["content"], self.cue)}]


@dataclass(frozen=True)
class Role:
    """A system persona before everything else (merged with any system message already there)."""

    inner: Strategy
    system: str

    def messages(self, example: Example, demos: Sequence[Example]) -> list[Message]:
        return [{"role": "system", "content": self.system}, *self.inner.messages(example, demos)]


def hoist_system(messages: list[Message]) -> list[Message]:
    """One system message, first: chat templates expect it there, whichever strategy added it."""
    system = [m["content"] for m in messages if m["role"] == "system"]
    rest = [m for m in messages if m["role"] != "system"]
    return ([{"role": "system", "content": _join(*system)}] if system else []) + rest


def resolve_instruction(arm: PromptArm, ctx: TaskContext) -> str:
    """The instruction template source: the arm's, else the task's, else a default for the task kind."""
    if arm.instruction is not None:
        return arm.instruction
    if ctx.instruction:
        return ctx.instruction
    if ctx.labels:
        return "Classify the input."
    return "Solve the problem." if ctx.metric == "numeric" else ""


def render_instruction(arm: PromptArm, ctx: TaskContext) -> str:
    labels = list(ctx.labels or [])
    text = Template(resolve_instruction(arm, ctx), "instruction").render({"labels": labels})
    if ctx.labels and arm.lists_labels:
        text = _join(text, "Answer with one of: " + ", ".join(labels) + ".")
    return text


def build_strategy(arm: PromptArm, ctx: TaskContext) -> Strategy:
    """Compose the strategy objects an arm asks for."""
    labels = list(ctx.labels or [])
    instruction = render_instruction(arm, ctx)
    in_user = arm.instruction_in == "user"
    base = ZeroShot(Template(arm.template, "template"), instruction if in_user else "", ctx.labels)
    strategy: Strategy = base
    if arm.n_shots:
        inline = Template(arm.demo_template, "demo_template") if arm.demo_format == "inline" else None
        strategy = FewShot(base, inline)
    if arm.chain_of_thought:
        strategy = ChainOfThought(strategy, Template(arm.cot_prompt, "cot_prompt").render({"labels": labels}))
    system = Template(arm.system, "system").render({"labels": labels, "instruction": instruction}) \
        if arm.system else ""
    system = _join(system, "" if in_user else instruction)
    return Role(strategy, system) if system else strategy


@dataclass(frozen=True)
class Prompter:
    """An arm bound to its task: the strategy plus the demo selector, ready to write prompts."""

    arm: PromptArm
    ctx: TaskContext
    strategy: Strategy
    selector: DemoSelector

    def demos(self, example: Example) -> list[Example]:
        return self.selector.select(example)

    def messages(self, example: Example, demos: Sequence[Example] | None = None) -> list[Message]:
        """The chat for `example`; pass `demos` when they were already selected (similarity costs an embedding)."""
        chosen = self.demos(example) if demos is None else demos
        return hoist_system(self.strategy.messages(example, chosen))


def prepare(arm: PromptArm, ctx: TaskContext, sample: Example | None = None) -> Prompter:
    """Bind `arm` to a task and render it once against `sample`: template mistakes fail here, before any call."""
    if arm.mode == "score" and not ctx.labels:
        raise TuneoffError("score mode needs a task with a label set", field="mode",
                           hint="use mode: generate for free-text and numeric tasks")
    if arm.demos is not None:
        pool, how = demo_examples(arm.demos), "first"
    else:
        pool, how = list(ctx.pool), arm.demo_selection
        if arm.n_shots and not pool:
            raise TuneoffError(f"asks for {arm.n_shots} demos but the task has no training examples",
                               field="shots", hint="give the task a `train` file, or explicit `demos`")
    selector = make_selector(how, pool, arm.n_shots, seed=arm.seed, labels=ctx.labels)
    prompter = Prompter(arm, ctx, build_strategy(arm, ctx), selector)
    if sample is not None:
        prompter.messages(sample)
    return prompter
