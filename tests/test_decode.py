"""The compiled, static-cache decode path (`decode: compiled`) gives eager's greedy tokens on the tiny Llama
(fp32), batched and left-padded, with stop strings; its compile is paid once per shape bucket.

    OMP_NUM_THREADS=1 python -m pytest -q tests/test_decode.py
"""

from __future__ import annotations

import pytest
from torch._dynamo.utils import counters

from tuneoff.errors import TuneoffError
from tuneoff.models import GenerationConfig, ModelSpec, load_backend
from tuneoff.models.decode import bucket

pytestmark = pytest.mark.usefixtures("one_thread")

PROMPTS = ["the movie was great", "a dull film and what a waste of time, boring", "card payment",
           "classify the sentiment of this review"]


def test_compiled_decode_gives_eager_greedy_tokens(sharp_model_dir):
    eager = load_backend(ModelSpec(str(sharp_model_dir), engine="transformers", batch_size=4))
    compiled = load_backend(ModelSpec(str(sharp_model_dir), engine="transformers", batch_size=4, decode="compiled"))
    ids = [eager.encode(p) for p in PROMPTS]
    graphs_before = counters["stats"]["unique_graphs"]
    for config in (GenerationConfig(max_new_tokens=12), GenerationConfig(max_new_tokens=12, stop=(" the",))):
        want = eager.generate_ids(ids, config)
        got = compiled.generate_ids(ids, config)
        assert [(c.text, c.tokens_out, c.finish_reason) for c in got] == \
            [(c.text, c.tokens_out, c.finish_reason) for c in want]
    assert len({c.text for c in want}) > 1  # the prompts are told apart, so equal lists mean something
    # one first call per (batch, cache length) shape: the stop-string run reused the first bucket's graph
    assert set(compiled.decoder.first_calls) == {(4, 128)} and compiled.compile_seconds > 0
    assert counters["stats"]["unique_graphs"] > graphs_before  # it really ran a compiled graph
    assert eager.compile_seconds == 0 and compiled.info.decode == "compiled"


def test_buckets_and_a_bad_decode_name():
    assert [bucket(n) for n in (1, 128, 129, 600)] == [128, 128, 256, 1024]
    with pytest.raises(TuneoffError, match="unknown decode") as info:
        ModelSpec("embedded:smollm2-135m-instruct", decode="compile")
    assert "compiled" in info.value.hint
