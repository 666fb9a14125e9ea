"""Integration on the real embedded SmolLM2-135M-Instruct (first run dequantises its GGUF, ~20 s)."""

import pytest
import torch
from typer.testing import CliRunner

from tuneoff.models import GenerationConfig

pytestmark = pytest.mark.embedded


def test_embedded_model_answers_a_question(embedded_backend):
    out = embedded_backend.generate([[{"role": "user", "content": "What is the capital of France?"}]],
                                    GenerationConfig(max_new_tokens=20))[0]
    assert "Paris" in out.text
    assert out.tokens_in > 5 and 1 <= out.tokens_out <= 20


def test_embedded_tokenizer_counts_tokens(embedded_backend):
    assert embedded_backend.count_tokens("Hello world") == 2
    assert embedded_backend.info.parameters == pytest.approx(134.5e6, rel=0.01)


def test_embedded_label_scoring_prefers_the_right_sentiment(embedded_backend):
    chat = [{"role": "user", "content": "Is the sentiment of this review positive or negative? Answer with one "
                                        "word.\n\nReview: an utterly delightful, moving film."}]
    pos, neg = embedded_backend.loglikelihood([chat, chat], ["positive", "negative"])
    assert pos.logprob > neg.logprob


def test_ask_cli_stores_the_call(tmp_path, monkeypatch):
    from conftest import REAL_HOME
    from tuneoff.cli import build_app
    from tuneoff.store import Store

    monkeypatch.setenv("TUNEOFF_HOME", REAL_HOME)  # reuse the model cache
    db = tmp_path / "s.sqlite"
    result = CliRunner().invoke(build_app(), ["ask", "What is the capital of France?", "--store", str(db),
                                              "--engine", "transformers"])
    assert result.exit_code == 0, result.output
    assert "Paris" in result.output
    calls = Store(db).db.execute("SELECT * FROM calls").fetchall()
    assert len(calls) == 1 and "Paris" in calls[0]["output"] and calls[0]["tokens_out"] > 0


def test_llamacpp_engine_serves_ask_with_the_same_model(embedded_backend):
    """With the llamacpp extra installed, `ask` decodes in llama.cpp from the same GGUF: its next-token
    distribution must be the transformers model's (same top-5, log-probs within 0.2), while greedy
    text may part where two tokens are within llama.cpp's activation rounding of each other."""
    np = pytest.importorskip("numpy")
    pytest.importorskip("llama_cpp")
    from llama_cpp import Llama

    from tuneoff.models.base import GenerationConfig
    from tuneoff.models.llamacpp import LlamaCppGenerator, gguf_of

    b = embedded_backend
    chat = [{"role": "user", "content": "What is the capital of France?"}]
    ids = b.encode(b.render(chat))
    with torch.no_grad():
        want = torch.log_softmax(b.model(torch.tensor([ids])).logits[0, -1].float(), -1).numpy()
    llm = Llama(model_path=str(gguf_of(b.info.name)), n_ctx=256, n_threads=2, logits_all=True, verbose=False)
    llm.eval(ids)
    got = np.asarray(llm.scores[len(ids) - 1], dtype=np.float64)
    llm.close()
    got = got - got.max() - np.log(np.exp(got - got.max()).sum())
    top = np.argsort(-want)[:5]
    assert set(top) == set(np.argsort(-got)[:5])
    assert np.abs(want[top] - got[top]).max() < 0.2
    gen = LlamaCppGenerator(gguf_of(b.info.name), threads=2)
    c = gen.generate([ids], GenerationConfig(max_new_tokens=8))[0]
    gen.close()
    assert c.tokens_in == len(ids) and 0 < c.tokens_out <= 8 and c.text.strip()
