"""GGUF export of a fine-tuned model, so llama.cpp / Ollama users can run the winner, and a parity check
of the export against the transformers model it came from.

    tuneoff export runs/sst2/lora model.gguf --check examples/sst2.yaml      # LoRA merged on load

Llama-architecture models only (SmolLM2 and the tiny test Llama), written with `gguf.GGUFWriter`
following llama.cpp's `convert_hf_to_gguf.py` conventions: its tensor names (`gguf.get_tensor_name_map`),
the Q/K rows permuted from Hugging Face's rotary layout to llama.cpp's interleaved one, the token list
with NORMAL/CONTROL/USER_DEFINED types, merges, special ids and the chat template. Tied input/output
embeddings write no `output.weight`: llama.cpp reuses `token_embd` then.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from ..errors import MissingPackageError, TuneoffError

OUTTYPES = ("f32", "f16", "q8_0")
"""Weight types: f32 (exact: the parity check's default), f16, q8_0 (2-D weights; norms stay f32)."""
PRE_TOKENIZERS = {"smollm": "smollm"}
"""Known tokenizer pre-splitting names by model family; byte-level BPE defaults to GPT-2's (`gpt-2`)."""


@dataclass
class ExportResult:
    path: Path
    tensors: int
    bytes: int
    outtype: str


def export_gguf(model: str, out: Path, outtype: str = "f32", name: str | None = None) -> ExportResult:
    """Write `model` (a fine-tune's output: HF directory or LoRA adapter, or any local spec) as one GGUF file.

    Args:
        model: A model spec that loads locally (`tuneoff.models.load_model`); an adapter is merged on load.
        out: The .gguf file to write (atomically: a failed export leaves nothing behind).
        outtype: One of OUTTYPES.
        name: `general.name` in the file (default: the model directory's name).
    """
    import gguf

    from ..models import ModelSpec, load_model

    if outtype not in OUTTYPES:
        raise TuneoffError(f"unknown outtype '{outtype}'", field="outtype", hint="one of: " + ", ".join(OUTTYPES))
    hf, tokenizer, _ = load_model(ModelSpec(model, dtype="float32", device="cpu"))
    config = hf.config
    if config.model_type != "llama":
        raise TuneoffError(f"GGUF export writes Llama-architecture models; this one is '{config.model_type}'",
                           field="model", hint="SmolLM2 (the default embedded model) and its fine-tunes are Llama")
    out = Path(out).expanduser()
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    writer = gguf.GGUFWriter(str(tmp), "llama")
    _write_hparams(writer, config, name or Path(model).name or model, outtype)
    _write_vocab(writer, tokenizer, config, model)
    tensors = _write_tensors(writer, hf, config, outtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    os.replace(tmp, out)
    return ExportResult(out, tensors, out.stat().st_size, outtype)


def _write_hparams(writer, config, name: str, outtype: str) -> None:
    import gguf

    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    rope = (getattr(config, "rope_parameters", None) or {}).get("rope_theta") or getattr(config, "rope_theta", 10000.0)
    writer.add_name(name)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(float(rope))
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_vocab_size(config.vocab_size)
    writer.add_file_type({"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
                          "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[outtype])


def _write_vocab(writer, tokenizer, config, model: str) -> None:
    """Byte-level BPE vocabulary the way llama.cpp's converter writes it (`gpt2` tokenizer model)."""
    import tempfile

    import gguf

    if not getattr(tokenizer, "is_fast", False) or "merges" not in tokenizer.backend_tokenizer.to_str():
        raise TuneoffError("GGUF export needs a byte-level BPE tokenizer (tokenizer.json with merges)", field="model")
    reverse = {i: t for t, i in tokenizer.get_vocab().items()}
    added = tokenizer.get_added_vocab()
    specials = {i for i, t in tokenizer.added_tokens_decoder.items() if t.special}
    tokens, types = [], []
    for i in range(config.vocab_size):
        if i not in reverse:  # embedding rows past the tokenizer (padding to a multiple)
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
            continue
        tokens.append(reverse[i])
        types.append(gguf.TokenType.CONTROL if i in specials else
                     gguf.TokenType.USER_DEFINED if reverse[i] in added else gguf.TokenType.NORMAL)
    writer.add_tokenizer_model("gpt2")
    family = next((v for k, v in PRE_TOKENIZERS.items() if k in (model + str(config.name_or_path)).lower()), "gpt-2")
    writer.add_tokenizer_pre(family)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    with tempfile.TemporaryDirectory() as folder:
        tokenizer.save_pretrained(folder)  # SpecialVocab reads merges, special ids and the template from files
        gguf.SpecialVocab(folder, load_merges=True, n_vocab=len(tokens)).add_to_gguf(writer, quiet=True)


def _write_tensors(writer, hf, config, outtype: str) -> int:
    import gguf

    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, config.num_hidden_layers)
    count = 0
    for hf_name, tensor in hf.state_dict().items():
        if hf_name == "lm_head.weight" and config.tie_word_embeddings:
            continue  # tied: llama.cpp reads token_embd for the output projection
        name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise TuneoffError(f"no GGUF name for tensor '{hf_name}'", field="model")
        data = tensor.detach().float().numpy()
        if hf_name.endswith("q_proj.weight"):
            data = _permute(data, config.num_attention_heads, config.num_attention_heads)
        elif hf_name.endswith("k_proj.weight"):
            data = _permute(data, config.num_attention_heads, config.num_key_value_heads)
        _add(writer, name, data, outtype)
        count += 1
    return count


def _permute(w, n_head: int, n_head_kv: int):
    """Hugging Face's rotary halves -> llama.cpp's interleaved pairs, per head (the converter's `permute`)."""
    heads = n_head_kv if n_head_kv != n_head else n_head
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _add(writer, name: str, data, outtype: str) -> None:
    import gguf
    import numpy as np

    if data.ndim < 2 or outtype == "f32":  # norms stay f32, as the converter keeps them
        writer.add_tensor(name, data.astype(np.float32))
    elif outtype == "f16":
        writer.add_tensor(name, data.astype(np.float16))
    elif data.shape[-1] % 32:  # q8_0 packs rows in blocks of 32
        writer.add_tensor(name, data.astype(np.float16))
    else:
        q = gguf.quants.quantize(data, gguf.GGMLQuantizationType.Q8_0)
        writer.add_tensor(name, q, raw_shape=q.shape, raw_dtype=gguf.GGMLQuantizationType.Q8_0)


@dataclass
class Parity:
    """Greedy outputs of the exported GGUF in llama.cpp against the transformers model, prompt by prompt."""

    prompts: int
    same_output: int
    """Prompts whose greedy continuations are identical."""
    same_tokens: int
    """Prompts llama.cpp tokenises to exactly the ids transformers uses."""
    pairs: list[dict] = field(default_factory=list)
    """{"prompt", "hf", "gguf"} per prompt."""

    @property
    def agreement(self) -> float:
        return self.same_output / self.prompts if self.prompts else 0.0


def parity(model: str, gguf_path: Path, chats: Sequence[list[dict]], max_new_tokens: int = 32) -> Parity:
    """Run the same rendered prompts (the same token ids) greedily through transformers and llama.cpp and
    compare the generated token ids (texts would differ on partial UTF-8 bytes, printed differently)."""
    import torch

    from ..models import ModelSpec, load_backend
    from ..models.llamacpp import INSTALL, LlamaCppGenerator, installed

    if not installed():
        raise MissingPackageError("the parity check runs the GGUF in llama.cpp", hint=f"run: {INSTALL}")
    backend = load_backend(ModelSpec(model, dtype="float32", engine="transformers", batch_size=1))
    texts = [backend.render(chat) for chat in chats]
    ids = [backend.encode(t) for t in texts]
    eos = backend.tokenizer.eos_token_id
    hf = [_hf_greedy(backend, i, max_new_tokens, eos) for i in ids]
    engine = LlamaCppGenerator(Path(gguf_path), torch.get_num_threads())
    try:
        cpp = [_cpp_greedy(engine.llm, i, max_new_tokens) for i in ids]
        same_tokens = sum(engine.llm.tokenize(t.encode(), add_bos=False, special=True) == i for t, i in zip(texts, ids))
    finally:
        engine.close()
    decode = backend.tokenizer.decode
    pairs = [{"prompt": c[-1]["content"], "hf": decode(h, skip_special_tokens=True),
              "gguf": decode(g, skip_special_tokens=True), "same": h == g} for c, h, g in zip(chats, hf, cpp)]
    return Parity(len(chats), sum(p["same"] for p in pairs), same_tokens, pairs)


def _hf_greedy(backend, ids: list[int], n: int, eos: int) -> list[int]:
    import torch

    with torch.inference_mode():
        out = backend.model.generate(input_ids=torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                                     max_new_tokens=n, do_sample=False, temperature=None, top_p=None, top_k=None,
                                     pad_token_id=backend.tokenizer.pad_token_id)
    new = out[0, len(ids):].tolist()
    return new[:new.index(eos) + 1] if eos in new else new


def _cpp_greedy(llm, ids: list[int], n: int) -> list[int]:
    out = []
    # temperature 0 with top-k 1: argmax; no penalties, as transformers' greedy
    for token in llm.generate(ids, top_k=1, top_p=1.0, min_p=0.0, temp=0.0, repeat_penalty=1.0, reset=True):
        out.append(token)
        if token == llm.token_eos() or len(out) == n:
            break
    return out
