"""One prompt to one model, recorded in the store like every other call."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .models import GenerationConfig, ModelSpec, engine_of, load_backend
from .models.base import Completion
from .store import Store


@dataclass
class AskResult:
    completion: Completion
    run_id: int
    call_id: int
    messages: list[dict]


def demo_turns(demos_file: Path | None) -> list[dict]:
    """Few-shot demos from a data file, as alternating user/assistant turns."""
    if demos_file is None:
        return []
    from .data import load_dataset

    turns: list[dict] = []
    for ex in load_dataset(demos_file):
        turns += [{"role": "user", "content": ex.input}, {"role": "assistant", "content": ex.target}]
    return turns


def ask(prompt: str, spec: ModelSpec, store: Store, system: str | None = None, demos_file: Path | None = None,
        config: GenerationConfig = GenerationConfig(max_new_tokens=128), backend=None) -> AskResult:
    """Answer `prompt` with the model of `spec` (optionally a role and few-shot demos) and store the call."""
    messages = ([{"role": "system", "content": system}] if system else []) + demo_turns(demos_file)
    messages.append({"role": "user", "content": prompt})
    backend = backend or load_backend(spec)
    run_id = store.start_run("ask", model=spec.name, spec={"system": system, "demos": str(demos_file or "")})
    one = getattr(backend, "generate_one", None)  # a single request: the backend's lowest-latency engine
    completion = one(messages, config) if one else backend.generate([messages], config)[0]
    params = {"max_new_tokens": config.max_new_tokens, "temperature": config.temperature, "seed": config.seed,
              "stop": list(config.stop), "dtype": backend.info.dtype, "engine": engine_of(backend)}
    call_id = store.add_call(run_id=run_id, model=spec.name, prompt=backend.render(messages), params=params,
                             **completion.call_fields())
    store.finish_run(run_id, summary={"tokens_in": completion.tokens_in, "tokens_out": completion.tokens_out,
                                      "latency_s": completion.seconds})
    return AskResult(completion, run_id, call_id, messages)
