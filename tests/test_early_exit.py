"""With `exit_chunk` set, greedy batches drop their finished rows between chunks of that many tokens (`TransformersBackend.
_generate_with_early_exit`): the same tokens, texts and finish reasons as one `generate` over the batch.

    OMP_NUM_THREADS=1 python -m pytest -q tests/test_early_exit.py
"""

from __future__ import annotations

import pytest

from tuneoff.models import GenerationConfig, ModelSpec, load_backend

pytestmark = pytest.mark.usefixtures("one_thread")

PROMPTS = ["the movie was great", "a dull film and what a waste of time, boring", "card payment",
           "classify the sentiment of this review", "you are a helpful assistant", "0 1 2 3",
           "what is the capital of france", "refund"]


@pytest.mark.parametrize("stop, rows_leave", [((), False), (("e",), True), ((" the", "\n"), False)])
def test_early_exit_gives_the_tokens_of_one_batched_generate(sharp_model_dir, stop, rows_leave, monkeypatch):
    backend = load_backend(ModelSpec(str(sharp_model_dir), engine="transformers", batch_size=8))
    backend.exit_chunk = 16
    ids = [backend.encode(p) for p in PROMPTS]
    config = GenerationConfig(max_new_tokens=40, stop=stop)
    calls = []
    real = backend.model.generate
    monkeypatch.setattr(backend.model, "generate", lambda **kw: calls.append(kw["input_ids"].shape[0]) or real(**kw))
    chunked = backend.generate_ids(ids, config)
    backend.exit_chunk = 0  # one generate for the whole batch (the default): the reference
    whole = backend.generate_ids(ids, config)
    assert [(c.text, c.tokens_out, c.finish_reason) for c in chunked] == \
        [(c.text, c.tokens_out, c.finish_reason) for c in whole]
    assert len({c.text for c in whole}) > 2
    assert calls[0] == 8 and len(calls) > 2  # chunks ran (the last call is the reference)
    # rows that met their stop left the batch (the tiny model never ends a row by itself)
    assert (min(calls[:-1]) < 8) == rows_leave
