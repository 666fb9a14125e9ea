"""Prompting strategies: small objects that turn (example, demos) into chat messages.

`ZeroShot` writes the instruction and the item; `FewShot` puts demos before it (as turns or
inline); `ChainOfThought` adds the reasoning cue; `Role` adds a system persona. They wrap each
other, so any combination is a composition, built by `build_strategy` from a `PromptArm`.
`CompletionText` writes the same parts as text a base model continues (the arm's `format`).
`prepare` binds an arm to its task and checks every template against a real example before any
model call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

from ..data import Example
from ..errors import TuneoffError
from ..models.base import Message, Prompt
from ..models.chat import CompletionFormat, resolve_format
from .answers import answer_after_cue
from .arm import PromptArm, TaskContext, demo_examples
from .demos import DemoSelector, make_selector
from .templates import Template


class Strategy(Protocol):
    def messages(self, example: Example, demos: Sequence[Example]) -> Prompt:
        """The chat messages (or completion text) for `example`, with `demos` shown first."""


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


@dataclass(frozen=True)
class CompletionText:
    """The completion format: persona, instruction and reasoning cue as opening paragraphs, then one
    paragraph per demo, then the item up to its answer label (`tuneoff.models.chat.CompletionFormat`)."""

    base: ZeroShot
    fmt: CompletionFormat
    head: tuple[str, ...] = ()
    """Paragraphs before the instruction (a persona)."""
    cue: str = ""
    """Chain of thought: the reasoning cue after the instruction; demos then end in 'The answer is X'."""

    def messages(self, example: Example, demos: Sequence[Example]) -> str:
        shown = [_reasoned(d) for d in demos] if self.cue else list(demos)
        head, solved = [*self.head], [(self.base.text(d), d.target) for d in shown]
        pending = None
        for m in example.context:  # an earlier conversation: its system turns open, its exchanges are solved
            if m["role"] == "system":
                head.append(m["content"])
            elif m["role"] == "user":
                pending = m["content"]
            elif pending is not None:
                solved, pending = [*solved, (pending, m["content"])], None
        return self.fmt.prompt([*head, self.base.instruction, self.cue], solved, self.base.text(example))


def hoist_system(messages: Prompt) -> Prompt:
    """One system message, first: chat templates expect it there, whichever strategy added it."""
    if isinstance(messages, str):
        return messages
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


def build_strategy(arm: PromptArm, ctx: TaskContext, fmt: str = "chat") -> Strategy:
    """Compose the strategy objects an arm asks for, writing chat messages or (`fmt` completion) text."""
    labels = list(ctx.labels or [])
    instruction = render_instruction(arm, ctx)
    if fmt == "completion":  # one paragraph each, so `instruction_in` makes no difference here
        cue = Template(arm.cot_prompt, "cot_prompt").render({"labels": labels}) if arm.chain_of_thought else ""
        system = Template(arm.system, "system").render({"labels": labels, "instruction": instruction}) \
            if arm.system else ""
        return CompletionText(ZeroShot(Template(arm.template, "template"), instruction, ctx.labels),
                              arm.completion, (system,), cue)
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
    format: str = "chat"
    """`chat` or `completion`: the arm's `format`, `auto` resolved for the model it runs on."""

    @property
    def stop(self) -> tuple[str, ...]:
        """The arm's stop strings, plus, in the completion format, where its answer paragraph ends
        (a reasoning answer may span paragraphs, so only the next input label ends it)."""
        derived = self.arm.completion.stops(paragraphs=not self.arm.chain_of_thought) \
            if self.format == "completion" else ()
        return tuple(dict.fromkeys([*self.arm.stop, *derived]))

    def demos(self, example: Example) -> list[Example]:
        return self.selector.select(example)

    def demos_many(self, examples: Sequence[Example]) -> list[list[Example]]:
        """`demos` for a batch (an evaluation chunk): similarity embeds the new items together, once."""
        return self.selector.select_many(examples)

    def messages(self, example: Example, demos: Sequence[Example] | None = None) -> Prompt:
        """The chat (or completion text) for `example`; pass `demos` when they were already selected
        (similarity costs an embedding)."""
        chosen = self.demos(example) if demos is None else demos
        return hoist_system(self.strategy.messages(example, chosen))


def prepare(arm: PromptArm, ctx: TaskContext, sample: Example | None = None, chat_model: bool = True) -> Prompter:
    """Bind `arm` to a task and render it once against `sample`: template mistakes fail here, before any call.
    `chat_model`: whether the model it will run on is a chat model (`BackendInfo.chat`), for format `auto`."""
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
    fmt = resolve_format(arm.format, chat_model)
    prompter = Prompter(arm, ctx, build_strategy(arm, ctx, fmt), selector, fmt)
    if sample is not None:
        prompter.messages(sample)
    return prompter
