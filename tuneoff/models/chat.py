"""Prompt text for a model: its chat template, a plain format without one, or a completion format.

Lives in the models room because scoring (`tuneoff.evaluate.scoring`) and training
(`tuneoff.finetune.collate`) must split a prompt from its answer at the very same place: the model
is trained on exactly the token boundary it is scored on. Torch-free.

A base model (no chat template, or marked as one) is not asked questions, it continues text. The
completion format writes what such a model has seen in pre-training: labelled fields, one example
per paragraph (`English: sea otter\\nFrench: loutre de mer\\n\\n`), ending in the answer's field label,
and its answer ends where the paragraph does, or where the model starts echoing the next field.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, Sequence

from ..errors import TuneoffError, did_you_mean
from .base import Chat, Prompt

PromptFormat = Literal["auto", "chat", "completion"]
"""How a prompt reaches a model: `chat` messages through its chat template (or `plain_render`), `completion`
text it continues, or `auto`: chat for chat models, completion for base models (`BackendInfo.chat`)."""
PROMPT_FORMATS: tuple[str, ...] = ("auto", "chat", "completion")

BLOCK_END = "\n\n"
"""What ends one example of the completion format, so what ends an answer."""

_FIELD = re.compile(r"^([^\W\d][\w ()/-]{0,30}):", re.MULTILINE)
"""A field label at the start of a line (`English:`, `Q:`, `Output:`)."""


def resolve_format(fmt: str, chat_model: bool) -> str:
    """`chat` or `completion`: `auto` picks by the model's kind."""
    if fmt not in PROMPT_FORMATS:
        raise TuneoffError(f"unknown prompt format '{fmt}'", field="format",
                           hint=did_you_mean(fmt, list(PROMPT_FORMATS)))
    if fmt == "auto":
        return "chat" if chat_model else "completion"
    return fmt


@dataclass(frozen=True)
class CompletionFormat:
    """Field labels for the completion format: `{input_prefix} {input}\\n{answer_prefix} {answer}\\n\\n` per example."""

    input_prefix: str = "Input:"
    """Label before an item (e.g. `English:`)."""
    answer_prefix: str = "Output:"
    """Label before its answer (e.g. `French:`); the prompt ends with it, so the model writes the answer."""

    def block(self, text: str, answer: str) -> str:
        """One solved example, a paragraph of its own."""
        return f"{self.query(text)}{answer_text(answer)}"

    def query(self, text: str) -> str:
        """The item to answer: its fields up to the answer label, which the model continues."""
        return f"{self.input_prefix} {text}\n{self.answer_prefix}"

    def prompt(self, head: Sequence[str], demos: Sequence[tuple[str, str]], text: str) -> str:
        """Paragraphs of `head` (persona, instruction), solved `demos` as (input, answer), then `text` to answer."""
        paragraphs = "".join(p.strip() + BLOCK_END for p in head if p and p.strip())
        return paragraphs + "".join(self.block(i, a) for i, a in demos) + self.query(text)

    def stops(self, paragraphs: bool = True) -> tuple[str, ...]:
        """Where an answer ends: a blank line (unless it may span `paragraphs`, as reasoning does) or an
        echoed input label, the model starting the next example by itself."""
        return ((BLOCK_END,) if paragraphs else ()) + (f"\n{self.input_prefix}",)


def answer_text(answer: str) -> str:
    """An answer as the completion format writes it after its label: a space before, a blank line after."""
    return f" {answer.strip()}{BLOCK_END}"


def field_stops(text: str) -> tuple[str, ...]:
    """Stops for a raw completion prompt: a blank line, and a new line starting with any field label the
    prompt uses, so a base model that starts writing the next example is cut there. A prompt ending in a
    bare label (`English: thank you\\nFrench:`) asks for that field's value: one line (Gemma-3-270M
    goes on with `\\nSpanish: gracias\\nGerman: danke`, fields the prompt never named)."""
    last_line = text.rstrip(" \t").rsplit("\n", 1)[-1]
    one_line = ("\n",) if _FIELD.fullmatch(last_line) else ()
    labels = dict.fromkeys(m.group(1) for m in _FIELD.finditer(text))
    return (*one_line, BLOCK_END, *(f"\n{label}:" for label in labels))


def plain_render(messages: Chat, add_generation_prompt: bool = True) -> str:
    """Chat format for models without a chat template: role-labelled paragraphs."""
    parts = []
    for m in messages:
        label = {"system": "", "user": "Input: ", "assistant": "Output: "}.get(m["role"], m["role"] + ": ")
        parts.append(f"{label}{m['content']}".strip())
    text = "\n\n".join(parts)
    return text + ("\n\nOutput:" if add_generation_prompt else "")


def split_prompt_completion(tokenizer, prompt: Prompt, target: str) -> tuple[str, str]:
    """(prompt text, completion text) under the tokenizer's chat template, a plain format without one, or,
    for a completion prompt (text), the answer as the completion format ends it."""
    if isinstance(prompt, str):
        return prompt, answer_text(target)
    if not getattr(tokenizer, "chat_template", None):
        # mirrors TransformersBackend for base models: "... Output:" then " answer" and end of text
        return plain_render(prompt, True), " " + target + (tokenizer.eos_token or "")
    head = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template(prompt + [{"role": "assistant", "content": target}], tokenize=False)
    if full.startswith(head):
        return head, full[len(head):]
    # templates that rewrite earlier turns once an answer follows: keep the generation prompt and
    # close the answer with the end-of-sequence token the model stops on
    return head, target + (tokenizer.eos_token or "")
