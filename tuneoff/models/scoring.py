"""Log-likelihood scoring of continuations on a transformers causal LM: the local backend's
`loglikelihood`, kept apart from generation because it has its own machinery.

Two ways through, same numbers (tests compare them):
  - plain batches: left-padded rows of prompt + continuation, one forward each;
  - packed rows (`PackedRow`): every continuation of one prompt in a single row under a tree-shaped
    4D mask, so a prompt scored against L labels runs once instead of L times.
Both reuse the keys/values of the prefix every prompt of a call shares (`PrefixCache`).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Iterator

import torch

from .base import Score

PACKED_SCORING = {"llama", "mistral", "qwen2", "qwen3"}
"""Model types whose scoring packs every continuation of a prompt into one row (4D masks)."""


@dataclass(frozen=True)
class ScoringOptions:
    """How one scoring call batches its work. None of these changes a score, only time and memory."""

    batch_size: int = 16
    """Scoring batches hold at least this many rows, more when rows are short."""
    packed: bool = False
    """Pack each prompt's continuations into one row (needs an architecture in PACKED_SCORING)."""
    reuse_prefix: bool = True
    """Compute the prefix all prompts share once and reuse its keys/values."""
    min_prefix: int = 16
    """Shortest shared prompt prefix worth caching (tokens)."""
    tokens_per_batch: int = 4096
    """Token budget of a batch of short rows."""
    logprob_chunk: int = 512
    """Positions projected to the vocabulary at a time (bounds the logits' memory)."""


class PrefixCache:
    """The keys/values of the last shared prompt prefix a model scored.

    An evaluation sends its items in chunks that all open with the same prefix (the same instruction
    and fixed demos): keeping the last one spares each chunk its recomputation."""

    def __init__(self, model):
        self.model = model
        self.memo: tuple[tuple[int, ...], object] | None = None

    def get(self, prefix: list[int]):
        key = tuple(prefix)
        if self.memo is None or self.memo[0] != key:
            ids = torch.tensor([prefix], device=self.model.device)
            with torch.inference_mode():
                self.memo = (key, self.model(input_ids=ids, use_cache=True).past_key_values)
        return self.memo[1]

    def clear(self) -> None:
        self.memo = None


def score(model, pad_id: int, prompts: list[list[int]], conts: list[list[int]], options: ScoringOptions,
          prefixes: PrefixCache) -> list[Score]:
    """Score of `conts[i]` (token ids) after `prompts[i]` (token ids), in order."""
    # the instruction, label list and shared demos open every prompt: their keys/values are
    # computed once and reused, so each request only runs its own suffix + continuation
    shared = common_prefix_len(prompts) if options.reuse_prefix else 0
    shared = min(shared, min(len(p) for p in prompts) - 1) if prompts else 0
    prefix_cache = prefixes.get(prompts[0][:shared]) if shared >= options.min_prefix else None
    if prefix_cache is None:
        shared = 0
    if options.packed:
        return _score_packed(model, pad_id, prompts, conts, prefix_cache, shared, options)
    rows = [(p[shared:], c, len(p)) for p, c in zip(prompts, conts)]
    out: list[Score | None] = [None] * len(rows)
    for idx in token_batches([len(r[0]) + len(r[1]) for r in rows], options):
        for i, s in zip(idx, _score_batch(model, pad_id, [rows[i] for i in idx], prefix_cache, shared)):
            out[i] = s
    return out  # type: ignore[return-value]


def token_batches(widths: list[int], options: ScoringOptions) -> list[list[int]]:
    """Indices grouped by similar width, at least `batch_size` rows or a token budget per batch."""
    order = sorted(range(len(widths)), key=widths.__getitem__)
    batches, start = [], 0
    while start < len(order):
        size = max(options.batch_size, options.tokens_per_batch // max(widths[order[start]], 1))
        batches.append(order[start:start + size])
        start += len(batches[-1])
    return batches


def _expanded(prefix_cache, rows: int):
    # the cached prefix serves every row of the batch; the copy keeps the memo itself untouched
    cache = copy.deepcopy(prefix_cache)
    cache.batch_repeat_interleave(rows)
    return cache


def _score_batch(model, pad_id: int, rows: list[tuple[list[int], list[int], int]], prefix_cache,
                 shared: int) -> list[Score]:
    # left padding aligns every continuation at the right end, so one `logits_to_keep` slice
    # covers all of them and the vocabulary projection runs only where it is needed; with a
    # cached prefix the padding sits between the prefix and each row's suffix, masked out
    input_ids, mask = left_pad([p + c for p, c, _ in rows], pad_id, model.device)
    positions = shared + (mask.cumsum(-1) - 1).clamp(min=0)
    kwargs = {}
    if prefix_cache is not None:
        ones = torch.ones((len(rows), shared), dtype=mask.dtype, device=mask.device)
        kwargs = dict(past_key_values=_expanded(prefix_cache, len(rows)))
        mask = torch.cat([ones, mask], dim=1)
    keep = max(len(c) for _, c, _ in rows) + 1
    start = time.perf_counter()
    with torch.inference_mode():
        logits = model(input_ids=input_ids, attention_mask=mask, position_ids=positions,
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


def _score_packed(model, pad_id: int, prompts: list[list[int]], conts: list[list[int]], prefix_cache,
                  shared: int, options: ScoringOptions) -> list[Score]:
    """Requests that share a prompt are packed into one row: the prompt's suffix once, then every
    continuation, each attending to the prompt and to itself only (a tree-shaped 4D mask)."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, p in enumerate(prompts):
        groups.setdefault(tuple(p), []).append(i)
    items = [(list(p[shared:]), members) for p, members in groups.items()]
    out: list[Score | None] = [None] * len(prompts)
    widths = [len(s) + sum(len(conts[i]) for i in m) for s, m in items]
    for idx in token_batches(widths, options):
        batch = [items[k] for k in idx]
        for i, s in _packed_batch(model, pad_id, batch, conts, prefix_cache, shared, options.logprob_chunk):
            out[i] = s
    return out  # type: ignore[return-value]


def _packed_batch(model, pad_id: int, batch, conts, prefix_cache, shared: int,
                  chunk: int) -> Iterator[tuple[int, Score]]:
    rows = [PackedRow.build(suffix, [conts[i] for i in members], shared) for suffix, members in batch]
    ids, pos, allow = _packed_inputs(rows, pad_id, shared)
    kwargs = {"past_key_values": _expanded(prefix_cache, len(rows))} if prefix_cache is not None else {}
    start = time.perf_counter()
    with torch.inference_mode():
        hidden = model.get_decoder()(input_ids=ids.to(model.device), attention_mask=allow.to(model.device),
                                     position_ids=pos.to(model.device), use_cache=False,
                                     **kwargs).last_hidden_state
        # project to the vocabulary only at the positions that predict a continuation token
        where = [(r, q) for r, row in enumerate(rows) for q in row.predictors]
        picked = hidden[[r for r, _ in where], [q for _, q in where]]
        targets = torch.tensor([t for row in rows for cont in row.continuations for t in cont],
                               dtype=torch.long, device=picked.device)
        logprobs = target_logprobs(model, picked, targets, chunk).tolist()
    seconds = time.perf_counter() - start
    k = 0
    for (suffix, members), row in zip(batch, rows):
        for i, cont in zip(members, row.continuations):
            n = len(cont)
            total = sum(logprobs[k:k + n])
            k += n
            yield i, Score(logprob=total, tokens=n, tokens_in=shared + len(suffix), seconds=seconds)


def _packed_inputs(rows: list["PackedRow"], pad_id: int, shared: int):
    """(ids, positions, 4D boolean mask) of a batch of packed rows, right-padded to the widest."""
    width = max(len(r.tokens) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    pos = torch.zeros((len(rows), width), dtype=torch.long)
    allow = torch.zeros((len(rows), 1, width, shared + width), dtype=torch.bool)
    for r, row in enumerate(rows):
        n = len(row.tokens)
        ids[r, :n], pos[r, :n] = torch.tensor(row.tokens), torch.tensor(row.positions)
        allow[r, 0, :n, shared:shared + n] = row.mask
        allow[r, 0, :n, :shared] = True
        # padding queries attend to themselves only: a fully masked row would give NaN
        allow[r, 0, range(n, width), range(shared + n, shared + width)] = True
    return ids, pos, allow


def target_logprobs(model, hidden: torch.Tensor, targets: torch.Tensor, chunk: int) -> torch.Tensor:
    """log p(target | position) for each row of `hidden`: the target's logit minus the logsumexp
    over the vocabulary, a chunk of positions at a time. A full log-softmax would hold
    positions x vocabulary fp32 values twice (77 labels x 6 tokens x 49k: ~180 MB per prompt)."""
    out = torch.empty(len(targets), dtype=torch.float32, device=hidden.device)
    for start in range(0, len(targets), chunk):
        logits = _logits(model, hidden[start:start + chunk]).float()
        t = targets[start:start + chunk, None]
        out[start:start + chunk] = (logits.gather(-1, t) - torch.logsumexp(logits, -1, keepdim=True))[:, 0]
    return out


def _logits(model, hidden: torch.Tensor) -> torch.Tensor:
    logits = model.get_output_embeddings()(hidden)
    cap = getattr(model.config, "final_logit_softcapping", None)
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


def common_prefix_len(seqs: list[list[int]]) -> int:
    if not seqs:
        return 0
    first, n = seqs[0], min(len(s) for s in seqs)
    for s in seqs[1:]:
        k = 0
        while k < n and s[k] == first[k]:
            k += 1
        n = k
    return n


def left_pad(seqs: list[list[int]], pad: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, attention mask), left-padded: generation appends at the right end, and scoring wants
    every continuation to end there too. Shared with the backend's generation."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for r, s in enumerate(seqs):
        if s:
            ids[r, width - len(s):] = torch.tensor(s)
            mask[r, width - len(s):] = 1
    return ids.to(device), mask.to(device)
