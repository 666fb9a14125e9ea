"""How transformers decodes: eager (the default and the benchmark baseline) or compiled with a static KV cache.

`decode: compiled` hands `generate` a preallocated `StaticCache` and a `CompileConfig`, which is
transformers' own maintained route (generation/utils.py: prefill runs eager, every decode step runs
`torch.compile(model.__call__)`, inductor's CPU backend here). A static cache gives the decode step fixed
shapes, so the graph compiles once per (batch size, cache length) and then runs each token as a few
fused kernels instead of ~450 small eager ops.

Shape buckets: the cache length is the prompt's padded width plus `max_new_tokens`, rounded up to a
power of two (>= MIN_BUCKET), so prompts of similar length share a compiled graph. The first call of
each bucket pays the compile (tens of seconds on a 2-core CPU, less once inductor's on-disk cache has
the graph); `StaticDecoder.compile_seconds` keeps what each bucket's first call took, for the phase
timings. Measured (BENCHMARKS.md section 3): worth it in bf16 at batch 1 on an AVX512_BF16 EPYC
(~1.8x eager), not in fp32 there; so it is opt-in. Greedy tokens equal eager's in fp32 (tests); in bf16
the static cache's masked attention rounds differently, which can flip near-ties.
"""

from __future__ import annotations

import time

DECODES = ("eager", "compiled")
"""`eager`: transformers' dynamic cache, no compile. `compiled`: static cache + torch.compile'd decode step."""

MIN_BUCKET = 128


def check_decode(name: str, field: str = "decode") -> str:
    from ..errors import TuneoffError, did_you_mean

    if name in DECODES:
        return name
    raise TuneoffError(f"unknown decode '{name}'", field=field, hint=did_you_mean(str(name), list(DECODES)))


def bucket(length: int) -> int:
    """The cache length a sequence of `length` positions runs in: the next power of two, at least MIN_BUCKET."""
    size = MIN_BUCKET
    while size < length:
        size *= 2
    return size


class StaticDecoder:
    """`model.generate` with a static cache sized by bucket and the decode step compiled. One cache is kept
    (the last bucket's): reused while requests keep their shape, replaced (and freed) when it changes."""

    def __init__(self, model):
        from transformers.generation.configuration_utils import CompileConfig

        self.model = model
        # "default" mode: CUDA graphs ("reduce-overhead", transformers' default) mean nothing on CPU;
        # fixed shapes per bucket, so no dynamic-shape kernels
        self.compile_config = CompileConfig(fullgraph=False, dynamic=False, mode="default")
        self.compile_config._compile_all_devices = True  # transformers compiles on CUDA only unless told
        self.cache, self.cache_key = None, None
        self.first_calls: dict[tuple[int, int], float] = {}
        """(batch, cache length) -> seconds of its first `generate` (compile included)."""

    @property
    def compile_seconds(self) -> float:
        return sum(self.first_calls.values())

    def generate(self, input_ids, attention_mask, max_new_tokens: int, **kwargs):
        from transformers import StaticCache

        key = (input_ids.shape[0], bucket(input_ids.shape[1] + max_new_tokens))
        if self.cache_key != key:
            self.cache = None  # the old one's memory goes before the new one is allocated
            self.cache, self.cache_key = StaticCache(config=self.model.config, max_cache_len=key[1]), key
        else:
            self.cache.reset()
        began = time.perf_counter()
        out = self.model.generate(input_ids=input_ids, attention_mask=attention_mask, max_new_tokens=max_new_tokens,
                                  past_key_values=self.cache, compile_config=self.compile_config, **kwargs)
        self.first_calls.setdefault(key, time.perf_counter() - began)
        return out
