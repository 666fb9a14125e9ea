"""One prompt to one model, recorded in the store like every other call.

A chat model gets the prompt as a user message; a base model (format `auto`, `BackendInfo.chat` false)
gets it as text to continue: "The capital of France is" is completed, not answered, and the reply ends
at a blank line or where the model starts a new field of the prompt's own (`English:` after
`English: thank you\\nFrench:`), instead of running on to the token limit.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from .models import GenerationConfig, ModelSpec, engine_of, load_backend
from .models.base import Completion, Prompt
from .models.chat import CompletionFormat, field_stops, resolve_format
from .store import Store


@dataclass
class AskResult:
    completion: Completion
    run_id: int
    call_id: int
    messages: Prompt
    """What the model was sent: chat messages, or the completion text."""
    format: str = "chat"
    """`chat` or `completion`, as resolved for the model."""


def demo_pairs(demos_file: Path | None) -> list[tuple[str, str]]:
    """Few-shot demos from a data file, as (input, target) pairs."""
    if demos_file is None:
        return []
    from .data import load_dataset

    return [(ex.input, ex.target) for ex in load_dataset(demos_file)]


def demo_turns(demos_file: Path | None) -> list[dict]:
    """Few-shot demos from a data file, as alternating user/assistant turns."""
    turns: list[dict] = []
    for text, target in demo_pairs(demos_file):
        turns += [{"role": "user", "content": text}, {"role": "assistant", "content": target}]
    return turns


def build_request(prompt: str, fmt: str, system: str | None = None,
                  demos_file: Path | None = None) -> tuple[Prompt, tuple[str, ...]]:
    """(what the model is sent, the stop strings its format adds) for `prompt` in format `chat` or `completion`."""
    if fmt == "chat":
        messages = ([{"role": "system", "content": system}] if system else []) + demo_turns(demos_file)
        return messages + [{"role": "user", "content": prompt}], ()
    demos = demo_pairs(demos_file)
    if demos:  # labelled paragraphs, as a prompt arm writes them
        text = CompletionFormat().prompt([system or ""], demos, prompt)
    else:  # the prompt is the text to continue, as typed
        text = f"{system.strip()}\n\n{prompt}" if system else prompt
    return text, field_stops(text)


def ask(prompt: str, spec: ModelSpec, store: Store, system: str | None = None, demos_file: Path | None = None,
        config: GenerationConfig = GenerationConfig(max_new_tokens=128), backend=None,
        prompt_format: str = "auto") -> AskResult:
    """Answer `prompt` with the model of `spec` (optionally a role and few-shot demos) and store the call.

    prompt_format: `chat` (messages), `completion` (text the model continues) or `auto`: chat for chat models,
        completion for base models.
    """
    backend = backend or load_backend(spec)
    fmt = resolve_format(prompt_format, backend.info.chat)
    request, stops = build_request(prompt, fmt, system, demos_file)
    config = dataclasses.replace(config, stop=tuple(dict.fromkeys([*config.stop, *stops])))
    run_id = store.start_run("ask", model=spec.name, spec={"system": system, "demos": str(demos_file or ""),
                                                           "format": fmt})
    one = getattr(backend, "generate_one", None)  # a single request: the backend's lowest-latency engine
    completion = one(request, config) if one else backend.generate([request], config)[0]
    params = {"max_new_tokens": config.max_new_tokens, "temperature": config.temperature, "seed": config.seed,
              "stop": list(config.stop), "dtype": backend.info.dtype, "engine": engine_of(backend), "format": fmt}
    call_id = store.add_call(run_id=run_id, model=spec.name, prompt=backend.render(request), params=params,
                             **completion.call_fields())
    store.finish_run(run_id, summary={"tokens_in": completion.tokens_in, "tokens_out": completion.tokens_out,
                                      "latency_s": completion.seconds})
    return AskResult(completion, run_id, call_id, request, fmt)
