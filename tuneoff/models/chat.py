"""Chat messages -> the text a tokenizer's model sees: its chat template, or a plain format without one.

Lives in the models room because scoring (`tuneoff.evaluate.scoring`) and training
(`tuneoff.finetune.collate`) must split a prompt from its answer at the very same place: the model
is trained on exactly the token boundary it is scored on. Torch-free.
"""

from __future__ import annotations

from .base import Chat


def plain_render(messages: Chat, add_generation_prompt: bool = True) -> str:
    """Prompt format for base models without a chat template: role-labelled paragraphs."""
    parts = []
    for m in messages:
        label = {"system": "", "user": "Input: ", "assistant": "Output: "}.get(m["role"], m["role"] + ": ")
        parts.append(f"{label}{m['content']}".strip())
    text = "\n\n".join(parts)
    return text + ("\n\nOutput:" if add_generation_prompt else "")


def split_prompt_completion(tokenizer, prompt: list[dict], target: str) -> tuple[str, str]:
    """(prompt text, completion text) under the tokenizer's chat template, or a plain format without one."""
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
