"""GGUF export: the file's metadata, names and vocabulary read back with `gguf.GGUFReader`, the Q/K
permutation, and greedy parity in llama.cpp (llama-cpp-python: `pip install 'tuneoff[llamacpp]'`) against
transformers, on the tiny Llama (and a LoRA fine-tune of it) and on the embedded model.

    OMP_NUM_THREADS=1 python -m pytest -q tests/test_export.py
"""

from __future__ import annotations

import numpy as np
import pytest

from tuneoff.errors import TuneoffError
from tuneoff.finetune.export import _permute, export_gguf, parity

PROMPTS = ["the movie was great", "a dull film", "what a waste of time", "card payment refund", "the answer is 42",
           "wonderful acting", "boring", "a helpful assistant"]


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.one_thread


def test_export_writes_llama_metadata_vocab_and_every_tensor(sharp_model_dir, tmp_path, tiny_tokenizer):
    import gguf

    result = export_gguf(str(sharp_model_dir), tmp_path / "m.gguf")
    reader = gguf.GGUFReader(result.path)
    fields = {k: f.contents() for k, f in reader.fields.items()}
    assert fields["general.architecture"] == "llama" and fields["llama.block_count"] == 2
    assert fields["llama.attention.head_count"] == 4 and fields["llama.attention.head_count_kv"] == 2
    assert fields["tokenizer.ggml.model"] == "gpt2" and fields["tokenizer.ggml.eos_token_id"] == tiny_tokenizer.eos_token_id
    assert fields["tokenizer.ggml.tokens"][:3] == ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    assert "im_start" in fields["tokenizer.chat_template"]
    names = {t.name for t in reader.tensors}
    assert {"token_embd.weight", "output_norm.weight", "blk.1.attn_q.weight", "blk.1.ffn_down.weight"} <= names
    assert "output.weight" not in names  # tied embeddings: llama.cpp reuses token_embd
    assert len(names) == result.tensors == 2 * 9 + 2


def test_q_and_k_rows_are_permuted_per_head_like_the_converter():
    w = np.arange(8 * 3, dtype=np.float32).reshape(8, 3)  # 2 heads of 4 rows: halves -> interleaved pairs
    out = _permute(w, 2, 2)
    assert [int(r[0]) for r in out] == [0, 6, 3, 9, 12, 18, 15, 21]
    assert _permute(w, 4, 2).tolist() == out.tolist()  # k_proj: permuted by the kv heads


def test_quantised_exports_are_smaller_and_other_architectures_are_refused(sharp_model_dir, tmp_path):
    f32 = export_gguf(str(sharp_model_dir), tmp_path / "a.gguf")
    f16 = export_gguf(str(sharp_model_dir), tmp_path / "b.gguf", "f16")
    q8 = export_gguf(str(sharp_model_dir), tmp_path / "c.gguf", "q8_0")
    assert q8.bytes < f32.bytes and f16.bytes < f32.bytes
    with pytest.raises(TuneoffError, match="outtype"):
        export_gguf(str(sharp_model_dir), tmp_path / "d.gguf", "q4")


def test_llama_cpp_runs_the_export_with_the_same_greedy_outputs(sharp_model_dir, tmp_path):
    pytest.importorskip("llama_cpp", reason="llama-cpp-python: pip install 'tuneoff[llamacpp]'")
    result = export_gguf(str(sharp_model_dir), tmp_path / "m.gguf")
    found = parity(str(sharp_model_dir), result.path, [[{"role": "user", "content": p}] for p in PROMPTS], 8)
    assert found.same_tokens == len(PROMPTS)
    assert found.agreement == 1.0, found.pairs
    assert len({p["hf"] for p in found.pairs}) > 4  # different answers per prompt: a wrong permutation would show


def test_a_lora_fine_tune_exports_merged(tiny_model_dir, tmp_path):
    pytest.importorskip("llama_cpp", reason="llama-cpp-python: pip install 'tuneoff[llamacpp]'")
    from tuneoff.config.specs import from_dict
    from tuneoff.config.task import TaskData, TaskSpec
    from tuneoff.data import Example
    from tuneoff.finetune import FinetuneArm, run_finetune
    from tuneoff.store import Store

    train = [Example(input=x, target="positive" if i % 2 else "negative", id=str(i)) for i, x in enumerate(PROMPTS)]
    data = TaskData(spec=TaskSpec(name="toy", train="t.jsonl"), train=train, dev=train[:2], test=train[:2],
                    labels=["negative", "positive"])
    arm = from_dict(FinetuneArm, dict(name="lora", method="lora", epochs=2, batch_size=4, learning_rate=5e-2))
    adapter = run_finetune(data, arm, str(tiny_model_dir), tmp_path / "lora", Store(":memory:")).output_dir
    result = export_gguf(str(adapter), tmp_path / "lora.gguf")
    found = parity(str(adapter), result.path, [[{"role": "user", "content": p}] for p in PROMPTS[:4]], 6)
    assert found.agreement == 1.0, found.pairs


@pytest.mark.embedded
def test_embedded_model_exports_and_agrees_in_llama_cpp(tmp_path):
    pytest.importorskip("llama_cpp", reason="llama-cpp-python: pip install 'tuneoff[llamacpp]'")
    from conftest import REAL_HOME
    import os

    os.environ["TUNEOFF_HOME"] = REAL_HOME  # the dequantised cache: no 20 s GGUF read per test
    result = export_gguf("embedded:smollm2-135m-instruct", tmp_path / "smol.gguf", "f32")
    found = parity("embedded:smollm2-135m-instruct", result.path,
                   [[{"role": "user", "content": "What is the capital of France?"}],
                    [{"role": "user", "content": "Is 'a dull film' positive or negative?"}]], 16)
    assert found.agreement == 1.0 and found.same_tokens == 2, found.pairs
