"""Local transformers backend: CUDA when present (or the device asked for), else CPU; fp32, bf16 or int8 (CPU).

It renders, encodes and generates here; scoring has its own module (`tuneoff.models.scoring`), and
single requests may go to an optional llama.cpp generator handed in at construction
(`tuneoff.models.llamacpp`). The `local` backend kind builds it (`tuneoff.models.weights.load`).
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from typing import TYPE_CHECKING, Sequence

import torch

from ..errors import TuneoffError
from . import cpu, scoring
from .base import BackendInfo, Completion, GenerationConfig, Prompt, Score
from .chat import plain_render
from .decode import StaticDecoder, check_decode
from .options import canonical_dtype, check_attention, check_device
from .scoring import PACKED_SCORING, left_pad

if TYPE_CHECKING:
    from .llamacpp import LlamaCppGenerator

TORCH_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "int8": torch.float32}
"""Canonical dtype names (`tuneoff.models.options`) -> the torch dtype the weights load in; `auto` is decided
per device. int8 loads in fp32 and its linear layers are quantised after (`tuneoff.models.quantize`)."""

AUTO_INT8 = False
"""Whether `auto` picks int8 on a CPU with int8 dot products (VNNI/AMX-INT8) but no native bf16. Off,
measured (`bench/int8_candidates.py`, BENCHMARKS.md section 7): the bar is bf16's own agreement with fp32
on the same items (what `auto` already accepts on bf16 CPUs: 91-95%), and `dtype: int8` (SmoothQuant
per-token int8) matches it on generated answers but flips ~1.8x as many label-scored predictions
(83-91%); `dtype: int8` stays available by hand. Tests flip it to check the choice itself."""

GENERATOR_POLICIES = ("never", "single", "always")
"""When a llama.cpp generator serves: never, single requests only (`generate_one`), or every generation."""


def resolve_precision(name: str, device: str) -> str:
    """The canonical precision (`float32`, `bfloat16`, `int8`) a dtype name or alias (`bf16`, `fp32`, ...)
    runs in on `device`. `auto`: bf16 where the hardware does it natively (CUDA bf16, or a CPU with
    AVX512_BF16/AMX); on a CPU without it, fp32 (`AUTO_INT8` says why not int8); elsewhere fp32."""
    name = canonical_dtype(name)
    if name != "auto":
        return name
    if device.startswith("cuda"):
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float32"
    features = cpu.cpu_features()
    if features.bf16:  # bf16 wins where both are there (`CpuFeatures.kind`)
        return "bfloat16"
    return "int8" if features.int8_dot and AUTO_INT8 else "float32"


def resolve_dtype(name: str, device: str) -> torch.dtype:
    """The torch dtype the weights load in for a dtype name or alias on `device` (`resolve_precision`;
    int8 loads in fp32, then quantises)."""
    return TORCH_DTYPES[resolve_precision(name, device)]


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_device(name: str | None = "auto") -> str:
    """The torch device a device option stands for: `auto` (or None) is CUDA when present, else CPU;
    `cuda` / `cuda:N` must exist on this machine (a user error naming what does, otherwise)."""
    name = check_device(name) or "auto"
    if name == "auto":
        return default_device()
    if name.startswith("cuda"):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(name.split(":", 1)[1]) if ":" in name else 0
        if index >= count:
            have = f"{count} CUDA device(s) (cuda:0..cuda:{count - 1})" if count else "no CUDA device"
            raise TuneoffError(f"device '{name}' is not on this machine, which has {have}", field="device",
                               hint="use device: auto (CUDA when present, else CPU) or cpu")
    return name


def resolve_attention(name: str, device: str) -> str | None:
    """transformers' `attn_implementation` for an ATTENTION option on `device`; None: transformers'
    default (SDPA where the architecture has it). `flash_attention_2` without CUDA or the flash-attn
    package falls back to SDPA with a warning: the same weights and numbers, another kernel."""
    name = check_attention(name)
    if name == "auto":
        return None
    if name == "flash_attention_2":
        from transformers.utils import is_flash_attn_2_available

        if not device.startswith("cuda") or not is_flash_attn_2_available():
            why = "it needs a CUDA device" if not device.startswith("cuda") else "the flash-attn package is not installed"
            warnings.warn(f"attn_implementation flash_attention_2: {why}; using sdpa", stacklevel=2)
            return "sdpa"
    return name


def sampling_kwargs(config: GenerationConfig) -> dict:
    """`generate` keywords for greedy or seeded sampling (the seed is set here, just before the call):
    greedy clears the model's own sampling defaults, which would otherwise warn or apply."""
    if config.greedy:
        return dict(do_sample=False, temperature=None, top_p=None, top_k=None)
    if config.seed is not None:
        torch.manual_seed(config.seed)
    return dict(do_sample=True, temperature=config.temperature, top_p=config.top_p, top_k=None)


class TransformersBackend:
    """A `Backend` over a transformers causal LM held in memory."""

    min_prefix = 16
    """Shortest shared prompt prefix worth caching for scoring (tokens)."""
    score_tokens_per_batch = 4096
    """Scoring batches hold at least `batch_size` rows, more when rows are short."""
    exit_chunk = 0
    """When > 0, greedy batches generate this many tokens at a time and drop their finished rows (and
    their KV cache) in between. Off: measured on DialogSum summaries (bench/long_generate.py, BENCHMARKS.md
    section 3b) chunks of 16 ran 0.84x one `generate` per batch, the restarts costing more than the rows
    saved; kept for batches whose lengths differ more (set it on the backend)."""
    logprob_chunk = 512
    """Positions projected to the vocabulary at a time when scoring (bounds the logits' memory)."""

    def __init__(self, model, tokenizer, info: BackendInfo, batch_size: int = 16, use_chat_template: bool = True,
                 reuse_prefix: bool = True, packed: bool | None = None,
                 generator: LlamaCppGenerator | None = None, generator_policy: str = "never",
                 decode: str = "eager"):
        """`generator`: an optional llama.cpp engine for generation; `generator_policy` (GENERATOR_POLICIES)
        says when it serves. `decode`: `eager` or `compiled` (`tuneoff.models.decode`)."""
        if generator_policy not in GENERATOR_POLICIES or (generator is None and generator_policy != "never"):
            raise ValueError(f"generator_policy {generator_policy!r} with generator {generator!r}")
        self.model = model.eval()
        self.reuse_prefix = reuse_prefix
        # packing needs custom 4D masks, which these architectures take as given (checked in tests)
        self.packed = packed if packed is not None else model.config.model_type in PACKED_SCORING
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        # a base model's tokenizer may still carry a template (a GGUF's metadata): `info.chat` says no
        self.use_chat_template = use_chat_template and info.chat and bool(getattr(tokenizer, "chat_template", None))
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.device = next(model.parameters()).device
        self.prefixes = scoring.PrefixCache(model)
        self.generator = generator if generator_policy != "never" else None
        self.generator_policy = generator_policy
        self.decoder = StaticDecoder(model) if check_decode(decode) == "compiled" else None
        # the info says which engine serves what (`engine_of`, the cache key): a copy, the caller's stays as given
        self.info = dataclasses.replace(
            info, chat=self.use_chat_template, engine="llamacpp" if self.generator is not None else "transformers",
            batch_engine="llamacpp" if generator_policy == "always" else "transformers", decode=decode)

    def attach_generator(self, generator: LlamaCppGenerator, policy: str = "single") -> None:
        """Hand generation (per `policy`) to a llama.cpp engine after loading, e.g. a fine-tune's GGUF export."""
        if policy not in GENERATOR_POLICIES[1:]:
            raise ValueError(f"generator_policy {policy!r}")
        self.generator, self.generator_policy = generator, policy
        self.info = dataclasses.replace(self.info, engine="llamacpp",
                                        batch_engine="llamacpp" if policy == "always" else "transformers")

    # -- text ---------------------------------------------------------------------------------
    def render(self, messages: Prompt, add_generation_prompt: bool = True) -> str:
        if isinstance(messages, str):  # a completion prompt is already the text the model continues
            return messages
        if self.use_chat_template:
            return self.tokenizer.apply_chat_template(list(messages), tokenize=False,
                                                      add_generation_prompt=add_generation_prompt)
        return plain_render(messages, add_generation_prompt)

    def encode(self, text: str, templated: bool | None = None) -> list[int]:
        """Token ids of a rendered prompt; `templated`: it came from the chat template (default: this
        backend renders chats through one)."""
        # the chat template already writes the special tokens it wants; other text needs them (Gemma's <bos>)
        special = not (self.use_chat_template if templated is None else templated)
        return self.tokenizer(text, add_special_tokens=special)["input_ids"]

    def encode_prompt(self, prompt: Prompt) -> list[int]:
        """Token ids of a chat or a completion text, as the model is sent them."""
        return self.encode(self.render(prompt), templated=self.use_chat_template and not isinstance(prompt, str))

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    @property
    def context_length(self) -> int | None:
        """Positions the model was trained on: past them its answers are not worth scoring."""
        return getattr(self.model.config, "max_position_embeddings", None)

    # -- generation ---------------------------------------------------------------------------
    def generate(self, chats: Sequence[Prompt], config: GenerationConfig) -> list[Completion]:
        return self.generate_ids([self.encode_prompt(c) for c in chats], config)

    def generate_ids(self, encoded: Sequence[list[int]], config: GenerationConfig) -> list[Completion]:
        """`generate` on prompts already tokenised (a server's raw-text completions have no chat to render)."""
        # llama.cpp has no schema constraint here: constrained requests decode in transformers
        if self.info.batch_engine == "llamacpp" and config.json_schema is None:
            return self.generator.generate(encoded, config)
        # length bucketing: neighbours in a batch have similar lengths, so little padding
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
        out: list[Completion | None] = [None] * len(encoded)
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            for i, c in zip(idx, self._generate_batch([encoded[i] for i in idx], config)):
                out[i] = c
        return out  # type: ignore[return-value]

    def generate_one(self, chat: Prompt, config: GenerationConfig) -> Completion:
        """One interactive request, where latency is what counts: the llama.cpp generator when the backend
        was given one (7x faster than transformers at batch 1 on CPU), else a batch of one. An evaluation always
        goes through `generate`, so its outputs never depend on how its items were chunked."""
        if self.generator is not None and config.json_schema is None:
            return self.generator.generate([self.encode_prompt(chat)], config)[0]
        return self.generate([chat], config)[0]

    def _generate_batch(self, batch: list[list[int]], config: GenerationConfig) -> list[Completion]:
        pad = self.tokenizer.pad_token_id
        input_ids, mask = left_pad(batch, pad, self.device)
        kwargs = dict(max_new_tokens=config.max_new_tokens, pad_token_id=pad, **sampling_kwargs(config))
        if config.stop:
            kwargs.update(stopping_criteria=[GeneratedTextStop(self.tokenizer, config.stop, input_ids.shape[1])])
        if config.json_schema is not None:
            from .constrained import json_schema_constraint

            kwargs.update(prefix_allowed_tokens_fn=json_schema_constraint(self.tokenizer, config.json_schema))
        start = time.perf_counter()
        if self.exit_chunk and self.decoder is None and config.greedy and len(batch) > 1 \
                and config.max_new_tokens > self.exit_chunk:
            gen = self._generate_with_early_exit(input_ids, mask, config.max_new_tokens, kwargs)
        else:
            gen = self.run_generate(input_ids, mask, **kwargs)
        seconds = time.perf_counter() - start
        new = gen[:, input_ids.shape[1]:].tolist()
        eos = _eos_ids(self.model, self.tokenizer)
        results = []
        for prompt, ids in zip(batch, new):
            n = next((k + 1 for k, t in enumerate(ids) if t in eos), len(ids))
            text = self.tokenizer.decode(ids[:n], skip_special_tokens=True)
            text, hit_stop = _cut_at_stop(text, config.stop)
            finish = "stop" if hit_stop or n < len(ids) or (ids and ids[n - 1] in eos) else "length"
            results.append(Completion(text=text, tokens_in=len(prompt), tokens_out=n, seconds=seconds,
                                      batch_size=len(batch), finish_reason=finish))
        return results

    def _generate_with_early_exit(self, input_ids: torch.Tensor, mask: torch.Tensor, max_new: int,
                                  kwargs: dict) -> torch.Tensor:
        """Greedy batched generation, `exit_chunk` tokens at a time, dropping the rows that have finished
        (end of sequence or a stop string) and their KV cache between chunks: a batch of summaries no
        longer decodes at full width until its longest one ends. Greedy rows are independent of each
        other, so the tokens are those of one `generate` over the whole batch (tests check it)."""
        from transformers import DynamicCache

        eos, pad = _eos_ids(self.model, self.tokenizer), self.tokenizer.pad_token_id
        stop = next((c for c in kwargs.get("stopping_criteria", ()) if isinstance(c, GeneratedTextStop)), None)
        rows, done = torch.arange(input_ids.shape[0]), {}

        def ended(seq: torch.Tensor) -> bool:  # what made `generate` finish the row (and pad it after)
            tokens = seq[width:].tolist()
            if set(tokens) & eos:
                return True
            return stop is not None and _cut_at_stop(self.tokenizer.decode(tokens, skip_special_tokens=True),
                                                     tuple(stop.stops))[1]

        ids, cache, width = input_ids, DynamicCache(config=self.model.config), input_ids.shape[1]
        kwargs = {k: v for k, v in kwargs.items() if k != "max_new_tokens"}
        while len(rows) and ids.shape[1] - width < max_new:
            step = min(self.exit_chunk, max_new - (ids.shape[1] - width))
            with torch.inference_mode():
                out = self.model.generate(input_ids=ids, attention_mask=mask, past_key_values=cache,
                                          max_new_tokens=step, return_dict_in_generate=True, **kwargs)
            grown = out.sequences.shape[1] - ids.shape[1]
            finished = torch.tensor([ended(seq) for seq in out.sequences], dtype=torch.bool)
            if grown < step or out.sequences.shape[1] - width >= max_new:  # every row ended, or the budget did
                finished[:] = True
            for i in torch.nonzero(finished).flatten().tolist():
                done[int(rows[i])] = out.sequences[i]
            keep = torch.nonzero(~finished).flatten()
            cache, ids = out.past_key_values, out.sequences[keep]
            cache.batch_select_indices(keep)
            mask = torch.cat([mask, mask.new_ones(mask.shape[0], grown)], dim=1)[keep]
            rows = rows[keep]
        longest = max(s.shape[0] for s in done.values())
        gen = torch.full((input_ids.shape[0], longest), pad, dtype=input_ids.dtype, device=input_ids.device)
        for row, seq in done.items():
            gen[row, :seq.shape[0]] = seq
        return gen

    def run_generate(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **kwargs):
        """`model.generate` through this backend's decode path: eager, or the static-cache compiled one."""
        with torch.inference_mode():
            if self.decoder is not None:
                return self.decoder.generate(input_ids, attention_mask, **kwargs)
            return self.model.generate(input_ids=input_ids, attention_mask=attention_mask, **kwargs)

    @property
    def compile_seconds(self) -> float:
        """Seconds the compiled decode path's first calls took (compile included); 0 when eager."""
        return self.decoder.compile_seconds if self.decoder is not None else 0.0

    # -- scoring ------------------------------------------------------------------------------
    def loglikelihood(self, chats: Sequence[Prompt], continuations: Sequence[str]) -> list[Score]:
        prompts = [self.encode_prompt(c) for c in chats]
        conts = [self.tokenizer(k, add_special_tokens=False)["input_ids"] for k in continuations]
        return scoring.score(self.model, self.tokenizer.pad_token_id, prompts, conts, self.scoring_options(),
                             self.prefixes)

    def scoring_options(self) -> scoring.ScoringOptions:
        # read at each call: the knobs are plain attributes that callers (tests, benchmarks) may set
        return scoring.ScoringOptions(batch_size=self.batch_size, packed=self.packed, reuse_prefix=self.reuse_prefix,
                                      min_prefix=self.min_prefix, tokens_per_batch=self.score_tokens_per_batch,
                                      logprob_chunk=self.logprob_chunk)


class GeneratedTextStop:
    """Stop a row once a stop string appears in its *generated* text.

    transformers' own `stop_strings` also matches across the prompt/answer boundary (a prompt that
    ends in "\n" plus a generated "\n" matches a "\n\n" stop before any answer is written).
    Only the last few tokens are decoded per step: a stop string of c characters spans at most c tokens.
    """

    def __init__(self, tokenizer, stops: tuple[str, ...], prompt_len: int):
        self.tokenizer = tokenizer
        self.stops = [s for s in stops if s]
        self.prompt_len = prompt_len
        self.window = max(len(s) for s in self.stops) + 2

    def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.Tensor:
        tails = input_ids[:, max(self.prompt_len, input_ids.shape[1] - self.window):]
        texts = self.tokenizer.batch_decode(tails, skip_special_tokens=True)
        return torch.tensor([any(s in t for s in self.stops) for t in texts], device=input_ids.device)


def _eos_ids(model, tokenizer) -> set[int]:
    ids = {tokenizer.eos_token_id}
    gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if isinstance(gen_eos, int):
        ids.add(gen_eos)
    elif gen_eos:
        ids.update(gen_eos)
    ids.discard(None)
    return ids


def _cut_at_stop(text: str, stops: tuple[str, ...]) -> tuple[str, bool]:
    cut = min((text.find(s) for s in stops if s and s in text), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)
