"""Local transformers backend: CPU by default, CUDA when present, fp32 or bf16."""

from __future__ import annotations

import copy
import functools
import time
from dataclasses import dataclass
from typing import Sequence

import torch

from .base import BackendInfo, Chat, Completion, GenerationConfig, Score
from .chat import plain_render
from .options import canonical_dtype

PACKED_SCORING = {"llama", "mistral", "qwen2", "qwen3"}
"""Model types whose scoring packs every continuation of a prompt into one row (4D masks)."""

TORCH_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
"""Canonical dtype names (`tuneoff.models.options`) -> torch dtypes; `auto` is decided per device."""


def resolve_dtype(name: str, device: str) -> torch.dtype:
    """The torch dtype of a dtype name or alias (`bf16`, `fp32`, ...) on `device`. `auto` picks bf16 where
    the hardware does it natively (CUDA bf16, or a CPU with AVX512_BF16/AMX)."""
    name = canonical_dtype(name)
    if name == "auto":
        if device.startswith("cuda"):
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
        return torch.bfloat16 if _cpu_has_bf16() else torch.float32
    return TORCH_DTYPES[name]


@functools.lru_cache(maxsize=1)
def _cpu_has_bf16() -> bool:
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


class TransformersBackend:
    """A `Backend` over a transformers causal LM held in memory."""

    min_prefix = 16
    """Shortest shared prompt prefix worth caching for scoring (tokens)."""
    score_tokens_per_batch = 4096
    """Scoring batches hold at least `batch_size` rows, more when rows are short."""
    logprob_chunk = 512
    """Positions projected to the vocabulary at a time when scoring (bounds the logits' memory)."""

    def __init__(self, model, tokenizer, info: BackendInfo, batch_size: int = 16, use_chat_template: bool = True,
                 reuse_prefix: bool = True, packed: bool | None = None):
        self.model = model.eval()
        self.reuse_prefix = reuse_prefix
        # packing needs custom 4D masks, which these architectures take as given (checked in tests)
        self.packed = packed if packed is not None else model.config.model_type in PACKED_SCORING
        self.tokenizer = tokenizer
        self.info = info
        self.batch_size = batch_size
        self.use_chat_template = use_chat_template and bool(getattr(tokenizer, "chat_template", None))
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.device = next(model.parameters()).device
        self._prefix_memo: tuple[tuple[int, ...], object] | None = None
        self.generator = None
        """An optional llama.cpp engine for generation (`tuneoff.models.llamacpp`)."""
        self.generator_policy = "never"
        """When it serves: `always` (every generation), `single` (`generate_one`: interactive requests), `never`."""

    # -- text ---------------------------------------------------------------------------------
    def render(self, messages: Chat, add_generation_prompt: bool = True) -> str:
        if self.use_chat_template:
            return self.tokenizer.apply_chat_template(list(messages), tokenize=False,
                                                      add_generation_prompt=add_generation_prompt)
        return plain_render(messages, add_generation_prompt)

    def encode(self, text: str) -> list[int]:
        # the chat template already writes the special tokens it wants
        special = not self.use_chat_template
        return self.tokenizer(text, add_special_tokens=special)["input_ids"]

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    # -- generation ---------------------------------------------------------------------------
    def generate(self, chats: Sequence[Chat], config: GenerationConfig) -> list[Completion]:
        encoded = [self.encode(self.render(c)) for c in chats]
        if self.generator is not None and self.generator_policy == "always":
            return self.generator.generate(encoded, config)
        # length bucketing: neighbours in a batch have similar lengths, so little padding
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
        out: list[Completion | None] = [None] * len(encoded)
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            for i, c in zip(idx, self._generate_batch([encoded[i] for i in idx], config)):
                out[i] = c
        return out  # type: ignore[return-value]

    def generate_one(self, chat: Chat, config: GenerationConfig) -> Completion:
        """One interactive request, where latency is what counts: llama.cpp when it is attached
        (7x faster than transformers at batch 1 on CPU), else a batch of one. An evaluation always
        goes through `generate`, so its outputs never depend on how its items were chunked."""
        if self.generator is not None:
            return self.generator.generate([self.encode(self.render(chat))], config)[0]
        return self.generate([chat], config)[0]

    def _generate_batch(self, batch: list[list[int]], config: GenerationConfig) -> list[Completion]:
        pad = self.tokenizer.pad_token_id
        input_ids, mask = _left_pad(batch, pad, self.device)
        kwargs = dict(max_new_tokens=config.max_new_tokens, pad_token_id=pad, do_sample=not config.greedy)
        if config.greedy:
            kwargs.update(temperature=None, top_p=None, top_k=None)
        else:
            kwargs.update(temperature=config.temperature, top_p=config.top_p, top_k=None)
            if config.seed is not None:
                torch.manual_seed(config.seed)
        if config.stop:
            kwargs.update(stopping_criteria=[GeneratedTextStop(self.tokenizer, config.stop, input_ids.shape[1])])
        start = time.perf_counter()
        with torch.inference_mode():
            gen = self.model.generate(input_ids=input_ids, attention_mask=mask, **kwargs)
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

    # -- scoring ------------------------------------------------------------------------------
    def loglikelihood(self, chats: Sequence[Chat], continuations: Sequence[str]) -> list[Score]:
        prompts = [self.encode(self.render(c)) for c in chats]
        conts = [self.tokenizer(k, add_special_tokens=False)["input_ids"] for k in continuations]
        # the instruction, label list and shared demos open every prompt: their keys/values are
        # computed once and reused, so each request only runs its own suffix + continuation
        shared = _common_prefix_len(prompts) if self.reuse_prefix else 0
        shared = min(shared, min(len(p) for p in prompts) - 1) if prompts else 0
        prefix_cache = self._prefix_cache(prompts[0][:shared]) if shared >= self.min_prefix else None
        if prefix_cache is None:
            shared = 0
        if self.packed:
            return self._score_packed(prompts, conts, prefix_cache, shared)
        rows = [(p[shared:], c, len(p)) for p, c in zip(prompts, conts)]
        out: list[Score | None] = [None] * len(rows)
        for idx in self._token_batches([len(r[0]) + len(r[1]) for r in rows]):
            for i, s in zip(idx, self._score_batch([rows[i] for i in idx], prefix_cache, shared)):
                out[i] = s
        return out  # type: ignore[return-value]

    def _token_batches(self, widths: list[int]) -> list[list[int]]:
        """Indices grouped by similar width, at least `batch_size` rows or a token budget per batch."""
        order = sorted(range(len(widths)), key=widths.__getitem__)
        batches, start = [], 0
        while start < len(order):
            size = max(self.batch_size, self.score_tokens_per_batch // max(widths[order[start]], 1))
            batches.append(order[start:start + size])
            start += len(batches[-1])
        return batches

    def _prefix_cache(self, prefix: list[int]):
        # an evaluation sends its items in chunks that all open with the same prefix (the same
        # instruction and fixed demos): the last prefix's keys/values are kept for the next chunk
        key = tuple(prefix)
        if self._prefix_memo is None or self._prefix_memo[0] != key:
            ids = torch.tensor([prefix], device=self.device)
            with torch.inference_mode():
                self._prefix_memo = (key, self.model(input_ids=ids, use_cache=True).past_key_values)
        return self._prefix_memo[1]

    def _expanded(self, prefix_cache, rows: int):
        cache = copy.deepcopy(prefix_cache)
        cache.batch_repeat_interleave(rows)
        return cache

    def _score_batch(self, rows: list[tuple[list[int], list[int], int]], prefix_cache, shared: int) -> list[Score]:
        # left padding aligns every continuation at the right end, so one `logits_to_keep` slice
        # covers all of them and the vocabulary projection runs only where it is needed; with a
        # cached prefix the padding sits between the prefix and each row's suffix, masked out
        input_ids, mask = _left_pad([p + c for p, c, _ in rows], self.tokenizer.pad_token_id, self.device)
        positions = shared + (mask.cumsum(-1) - 1).clamp(min=0)
        kwargs = {}
        if prefix_cache is not None:
            ones = torch.ones((len(rows), shared), dtype=mask.dtype, device=mask.device)
            kwargs = dict(past_key_values=self._expanded(prefix_cache, len(rows)))
            mask = torch.cat([ones, mask], dim=1)
        keep = max(len(c) for _, c, _ in rows) + 1
        start = time.perf_counter()
        with torch.inference_mode():
            logits = self.model(input_ids=input_ids, attention_mask=mask, position_ids=positions,
                                logits_to_keep=keep, use_cache=False, **kwargs).logits
            logprobs = torch.log_softmax(logits.float(), dim=-1)
        seconds = time.perf_counter() - start
        scores = []
        for row, (_, cont, prompt_len) in enumerate(rows):
            n = len(cont)
            # logits at position t predict token t+1: the n continuation tokens are predicted
            # by the n positions just before the final one
            lp = logprobs[row, keep - n - 1:keep - 1, :]
            target = torch.tensor(cont, device=lp.device)
            total = lp.gather(-1, target[:, None]).sum().item() if n else 0.0
            scores.append(Score(logprob=total, tokens=n, tokens_in=prompt_len, seconds=seconds))
        return scores

    def _score_packed(self, prompts: list[list[int]], conts: list[list[int]], prefix_cache, shared: int) -> list[Score]:
        """Requests that share a prompt are packed into one row: the prompt's suffix once, then every
        continuation, each attending to the prompt and to itself only (a tree-shaped 4D mask)."""
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, p in enumerate(prompts):
            groups.setdefault(tuple(p), []).append(i)
        items = [(list(p[shared:]), members) for p, members in groups.items()]
        out: list[Score | None] = [None] * len(prompts)
        widths = [len(s) + sum(len(conts[i]) for i in m) for s, m in items]
        for idx in self._token_batches(widths):
            batch = [items[k] for k in idx]
            for i, score in self._packed_batch(batch, conts, prefix_cache, shared):
                out[i] = score
        return out  # type: ignore[return-value]

    def _packed_batch(self, batch, conts, prefix_cache, shared: int):
        rows = [PackedRow.build(suffix, [conts[i] for i in members], shared) for suffix, members in batch]
        width = max(len(r.tokens) for r in rows)
        ids = torch.full((len(rows), width), self.tokenizer.pad_token_id, dtype=torch.long)
        pos = torch.zeros((len(rows), width), dtype=torch.long)
        allow = torch.zeros((len(rows), 1, width, shared + width), dtype=torch.bool)
        for r, row in enumerate(rows):
            n = len(row.tokens)
            ids[r, :n], pos[r, :n] = torch.tensor(row.tokens), torch.tensor(row.positions)
            allow[r, 0, :n, shared:shared + n] = row.mask
            allow[r, 0, :n, :shared] = True
            # padding queries attend to themselves only: a fully masked row would give NaN
            allow[r, 0, range(n, width), range(shared + n, shared + width)] = True
        kwargs = {"past_key_values": self._expanded(prefix_cache, len(rows))} if prefix_cache is not None else {}
        start = time.perf_counter()
        with torch.inference_mode():
            hidden = self.model.get_decoder()(input_ids=ids.to(self.device), attention_mask=allow.to(self.device),
                                              position_ids=pos.to(self.device), use_cache=False,
                                              **kwargs).last_hidden_state
            # project to the vocabulary only at the positions that predict a continuation token
            where = [(r, q) for r, row in enumerate(rows) for q in row.predictors]
            picked = hidden[[r for r, _ in where], [q for _, q in where]]
            targets = torch.tensor([t for row in rows for cont in row.continuations for t in cont],
                                   dtype=torch.long, device=picked.device)
            logprobs = self._target_logprobs(picked, targets).tolist()
        seconds = time.perf_counter() - start
        k = 0
        for (suffix, members), row in zip(batch, rows):
            for i, cont in zip(members, row.continuations):
                n = len(cont)
                total = sum(logprobs[k:k + n])
                k += n
                yield i, Score(logprob=total, tokens=n, tokens_in=shared + len(suffix), seconds=seconds)

    def _target_logprobs(self, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """log p(target | position) for each row of `hidden`: the target's logit minus the logsumexp
        over the vocabulary, a chunk of positions at a time. A full log-softmax would hold
        positions x vocabulary fp32 values twice (77 labels x 6 tokens x 49k: ~180 MB per prompt)."""
        out, chunk = torch.empty(len(targets), dtype=torch.float32, device=hidden.device), self.logprob_chunk
        for start in range(0, len(targets), chunk):
            logits = self._logits(hidden[start:start + chunk]).float()
            t = targets[start:start + chunk, None]
            out[start:start + chunk] = (logits.gather(-1, t) - torch.logsumexp(logits, -1, keepdim=True))[:, 0]
        return out

    def _logits(self, hidden: torch.Tensor) -> torch.Tensor:
        logits = self.model.get_output_embeddings()(hidden)
        cap = getattr(self.model.config, "final_logit_softcapping", None)
        return torch.tanh(logits / cap) * cap if cap else logits


@dataclass
class PackedRow:
    """One prompt suffix followed by all its continuations, with the mask that keeps them apart."""

    tokens: list[int]
    positions: list[int]
    mask: torch.Tensor
    """[n, n] bool: may query i attend to key j (both within this row)."""
    continuations: list[list[int]]
    predictors: list[int]
    """Row positions whose logits predict each continuation token, in order."""

    @classmethod
    def build(cls, suffix: list[int], continuations: list[list[int]], shared: int) -> "PackedRow":
        tokens, positions = list(suffix), list(range(shared, shared + len(suffix)))
        n = len(suffix) + sum(len(c) for c in continuations)
        mask = torch.zeros((n, n), dtype=torch.bool)
        mask[:len(suffix), :len(suffix)] = torch.tril(torch.ones(len(suffix), len(suffix), dtype=torch.bool))
        predictors = []
        for cont in continuations:
            begin = len(tokens)
            tokens += cont
            positions += list(range(shared + len(suffix), shared + len(suffix) + len(cont)))
            mask[begin:begin + len(cont), :len(suffix)] = True  # each continuation sees the whole prompt ...
            mask[begin:begin + len(cont), begin:begin + len(cont)] = torch.tril(  # ... and its own past only
                torch.ones(len(cont), len(cont), dtype=torch.bool))
            # the prompt's last token predicts the first continuation token; each token the next
            predictors += [len(suffix) - 1] + list(range(begin, begin + len(cont) - 1)) if cont else []
        return cls(tokens, positions, mask, continuations, predictors)


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


def _common_prefix_len(seqs: list[list[int]]) -> int:
    if not seqs:
        return 0
    first, n = seqs[0], min(len(s) for s in seqs)
    for s in seqs[1:]:
        k = 0
        while k < n and s[k] == first[k]:
            k += 1
        n = k
    return n


def _left_pad(seqs: list[list[int]], pad: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    # left padding: generation appends at the right end, so every row's prompt must end there
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for r, s in enumerate(seqs):
        if s:
            ids[r, width - len(s):] = torch.tensor(s)
            mask[r, width - len(s):] = 1
    return ids.to(device), mask.to(device)


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
