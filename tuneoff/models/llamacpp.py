"""llama.cpp as the generation engine of GGUF-backed models (optional: `pip install 'tuneoff[llamacpp]'`,
which compiles llama.cpp on install).

Why: at batch 1 a 135M model decodes ~7x faster in llama.cpp (quantised weights, fused kernels, no
Python per layer) than in transformers (see bench/decode.py). Batched evaluation is another matter:
transformers' batched bf16 `generate` serves many rows per weight read, and measured faster there, so
`engine: auto` sends single requests (`tuneoff ask`, latency) to llama.cpp and batches to transformers.
Scoring always stays in transformers: it needs the exact log-probabilities of the dequantised model.

Only models that *are* a GGUF (embedded ones, `.gguf` files) can use it; a fine-tuned arm can through
its `tuneoff export` GGUF. Before the first use on a machine, `engine_probe` runs a tiny generation in a
child process, so a llama.cpp build that crashes (AMX on some virtualised Xeons) falls back to
transformers instead of taking the process down.
"""

from __future__ import annotations

import atexit
import importlib.util
import time
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from ..errors import MissingPackageError, TuneoffError
from .base import Completion, GenerationConfig
from .options import ENGINES  # noqa: F401 (re-export: older imports read it from here)

if TYPE_CHECKING:
    from .spec import ModelSpec

INSTALL = "pip install 'tuneoff[llamacpp]'   (compiles llama.cpp: a few minutes)"


def installed() -> bool:
    return importlib.util.find_spec("llama_cpp") is not None


def gguf_of(name: str) -> Path | None:
    """The GGUF file a model spec stands for, or None (HF directories, fine-tunes, adapters)."""
    from .embedded import get_embedded

    if name.startswith("embedded:"):
        return get_embedded(name.split(":", 1)[1]).gguf_path()
    path = Path(name).expanduser()
    return path if path.suffix == ".gguf" and path.exists() else None


def generator_for(spec: ModelSpec, device: str) -> tuple[LlamaCppGenerator | None, str]:
    """(generator or None, policy) for a spec's `engine` setting; the policy is one of
    `tuneoff.models.local.GENERATOR_POLICIES`. llama.cpp here runs on CPU only."""
    if spec.engine == "transformers" or device != "cpu":
        return None, "never"
    gguf = gguf_of(spec.name)
    if spec.engine == "llamacpp" and gguf is None:
        raise TuneoffError(f"the llama.cpp engine needs a GGUF model, and '{spec.name}' is not one",
                           field="engine", hint="use engine: transformers (or auto) for this model")
    if spec.engine == "auto" and (gguf is None or not installed()):
        return None, "never"
    import torch

    from .engine_probe import probe

    if not installed():
        raise MissingPackageError("the llama.cpp engine needs llama-cpp-python", hint=f"run: {INSTALL}")
    if not probe(gguf).ok:  # a build that crashes here would take the process down: transformers instead
        return None, "never"
    # auto: only single requests; batched evaluation measured faster in transformers (module docstring)
    policy = "always" if spec.engine == "llamacpp" else "single"
    return LlamaCppGenerator(gguf, torch.get_num_threads()), policy


def attach_gguf(backend, gguf: Path, say=None) -> bool:
    """Serve `backend`'s single requests (`generate_one`, a server's lone request) from `gguf` in llama.cpp:
    a fine-tuned arm's `tuneoff export` file (whose greedy parity `tuneoff export --check` measures).
    Batches stay in transformers. False (and one line from the probe) where llama.cpp cannot run here."""
    import torch

    from .engine_probe import probe

    gguf = Path(gguf).expanduser()
    if gguf.suffix != ".gguf" or not gguf.is_file():
        raise TuneoffError(f"'{gguf}' is not a .gguf file", field="gguf",
                           hint="write one with: tuneoff export MODEL OUT.gguf --check TASK.yaml")
    if not installed():
        raise MissingPackageError("serving a GGUF export needs llama-cpp-python", hint=f"run: {INSTALL}")
    if not probe(gguf, say).ok:
        return False
    backend.attach_generator(LlamaCppGenerator(gguf, torch.get_num_threads()), "single")
    return True


class LlamaCppGenerator:
    """Greedy or sampled generation of token-id prompts through llama-cpp-python, one request at a time.
    The GGUF is opened on first use (0.1 s), so a backend that never generates alone never pays for it."""

    def __init__(self, gguf: Path, threads: int, n_ctx: int = 4096):
        if not installed():
            raise MissingPackageError("the llama.cpp engine needs llama-cpp-python", hint=f"run: {INSTALL}")
        self.gguf, self.threads, self.n_ctx = gguf, threads, n_ctx
        self._llm = None

    @property
    def llm(self):
        if self._llm is None:
            from llama_cpp import Llama

            self._llm = Llama(model_path=str(self.gguf), n_ctx=self.n_ctx, n_threads=self.threads,
                              n_threads_batch=self.threads, verbose=False)
            # freed before interpreter teardown: llama-cpp-python's own finaliser fails once its
            # C library is unloaded and prints a traceback at every exit
            atexit.register(self.close)
        return self._llm

    def close(self) -> None:
        if self._llm is not None:
            self._llm.close()
            self._llm = None

    def generate(self, prompts: Sequence[list[int]], config: GenerationConfig) -> list[Completion]:
        out = []
        for ids in prompts:
            began = time.perf_counter()
            # temperature 0 is llama.cpp's greedy sampler; penalties and min-p off so that greedy
            # means argmax, as in transformers
            res = self.llm.create_completion(
                prompt=list(ids), max_tokens=config.max_new_tokens, temperature=config.temperature,
                top_p=config.top_p, top_k=0, min_p=0.0, repeat_penalty=1.0, seed=config.seed,
                stop=list(config.stop) or None)
            choice, usage = res["choices"][0], res["usage"]
            out.append(Completion(text=choice["text"], tokens_in=usage["prompt_tokens"],
                                  tokens_out=usage["completion_tokens"], seconds=time.perf_counter() - began,
                                  batch_size=1, finish_reason="length" if choice["finish_reason"] == "length"
                                  else "stop"))
        return out
