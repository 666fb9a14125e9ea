"""Constrained label scoring: the log-likelihood of every declared label as the reply, argmax wins.

Scoring a prompt against L labels naively runs the whole prompt L times; the local backend packs
them into one row instead (see `TransformersBackend.loglikelihood`), so this module only decides
what text each label is scored as and reads the scores back per item.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Sequence

from ..models.base import Backend, Prompt
from ..models.chat import split_prompt_completion


@dataclass(frozen=True)
class LabelScores:
    """One item's label scores and what computing them cost."""

    logprobs: tuple[float, ...]
    """Summed log-probability of each label, in label order."""
    tokens: tuple[int, ...]
    """Tokens of each label (for the per-token mean)."""
    tokens_in: int
    """Prompt tokens."""
    seconds: float
    """Wall time the caller waited for the call that served this item."""
    batch_size: int
    """Items served by that call."""

    def call_fields(self, best: str) -> dict:
        """The store's `calls` columns a scored item fills: the winning label is its output."""
        return {"output": best, "tokens_in": self.tokens_in, "tokens_out": 0, "latency_s": self.seconds,
                "batch_size": self.batch_size, "finish_reason": "score"}

    def normed(self, norm: str) -> list[float]:
        """Each label's score as the arm ranks them: summed, or the mean per label token."""
        return normed(self.logprobs, self.tokens, norm)

    def best(self, labels: Sequence[str], norm: str) -> str:
        return argmax_label(labels, self.normed(norm))


def normed(logprobs: Sequence[float], tokens: Sequence[int], norm: str) -> list[float]:
    return [lp / max(n, 1) if norm == "mean" else lp for lp, n in zip(logprobs, tokens)]


def argmax_label(labels: Sequence[str], values: Sequence[float]) -> str:
    return labels[max(range(len(labels)), key=values.__getitem__)]


def label_token_ids(backend: Backend, words: Sequence[str]) -> dict[str, list[int]] | None:
    """Token ids of each scored label word, where the backend exposes its tokenizer (local models)."""
    tokenizer = getattr(backend, "tokenizer", None)
    if tokenizer is None:
        return None
    return {w: tokenizer(w, add_special_tokens=False)["input_ids"] for w in words}


def replies(backend: Backend, chat: Prompt, labels: Sequence[str], end_of_turn: bool) -> list[str]:
    """The text scored for each label: the label, closed the way the chat template closes an
    assistant turn when `end_of_turn` (the very split fine-tuning trains on), else the bare label."""
    tokenizer = getattr(backend, "tokenizer", None)
    if isinstance(chat, str):  # a completion prompt ends in a field label: the answer follows a space
        return [split_prompt_completion(tokenizer, chat, label)[1] if end_of_turn else " " + label
                for label in labels]
    if not end_of_turn or tokenizer is None:
        return list(labels)
    return [split_prompt_completion(tokenizer, list(chat), label)[1] for label in labels]


def score_labels(backend: Backend, chats: Sequence[Prompt], labels: Sequence[str],
                 end_of_turn: bool = True) -> list[LabelScores]:
    """Label scores for each chat: one backend call scores every (chat, label) pair of the chunk.

    How the pairs are computed is the backend's business: the local backend packs each prompt's
    labels into one row and reuses the prefix all prompts share (`TransformersBackend.loglikelihood`).
    Every item waited for the whole call, so each gets its wall time and the chunk as batch size.
    """
    if not chats:
        return []
    began = time.perf_counter()
    scores = backend.loglikelihood([c for c in chats for _ in labels],
                                   [r for c in chats for r in replies(backend, c, labels, end_of_turn)])
    seconds = time.perf_counter() - began
    n = len(labels)
    return [LabelScores(tuple(x.logprob for x in scores[i * n:(i + 1) * n]),
                        tuple(x.tokens for x in scores[i * n:(i + 1) * n]),
                        scores[i * n].tokens_in, seconds, len(chats)) for i in range(len(chats))]
