"""`dtype: int8` (CPU evaluation with int8 linear layers) and the CPU features `auto` reads, on tiny models."""

import json

import pytest
import torch

from tuneoff.errors import TuneoffError
from tuneoff.finetune import FinetuneArm
from tuneoff.models import ModelSpec, load_backend, load_model
from tuneoff.models import cpu, local, quantize
from tuneoff.models.base import GenerationConfig
from tuneoff.models.options import canonical_dtype

PROMPTS = [[{"role": "user", "content": text}] for text in
           ("the movie was great", "a dull boring film", "what is the capital of france",
            "classify the sentiment", "card payment refund", "think step by step")]
LABELS = ["positive", "negative", "paris", "the answer is 42"]


@pytest.mark.parametrize("name", ["int8", "INT8", " qint8 "])
def test_int8_is_a_dtype_name_everywhere_but_training(name):
    assert canonical_dtype(name) == "int8"
    assert ModelSpec(dtype=name) == ModelSpec(dtype="int8")
    with pytest.raises(TuneoffError) as info:
        FinetuneArm(dtype=name)
    assert info.value.field == "dtype" and "float32" in info.value.hint


CPUINFO = "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Platinum 8259CL CPU @ 2.50GHz\nflags\t\t: {}\n\nprocessor\t: 1\n"


@pytest.mark.parametrize("flags, kind", [
    ("fpu sse avx2 avx512f avx512_vnni", "int8"),      # Cascade Lake: VNNI, no bf16 (issue 15's Xeon)
    ("fpu avx2 avx_vnni", "int8"),                      # Alder Lake: AVX-VNNI
    ("avx512f avx512_vnni avx512_bf16", "bf16"),        # Zen 4 / Cooper Lake: both, bf16 wins
    ("avx512f amx_int8 amx_bf16 amx_tile", "bf16"),     # Sapphire Rapids: AMX
    ("fpu sse avx2 fma", "fp32"),                       # neither
    ("", "fp32"),
])
def test_cpuinfo_flags_make_the_cpu_kind(flags, kind):
    features = cpu.parse_cpuinfo(CPUINFO.format(flags))
    assert features.model.startswith("Intel(R) Xeon(R) Platinum 8259CL") and features.kind == kind
    assert features.kind in cpu.CPU_KINDS and features.model in features.describe()


@pytest.mark.parametrize("flags, auto_int8, expected", [
    ("avx512f avx512_vnni", True, "int8"),
    ("avx2 avx_vnni", True, "int8"),
    ("avx2 amx_int8", True, "int8"),
    ("avx512_vnni avx512_bf16", True, "bfloat16"),
    ("avx512f avx2", True, "float32"),
    ("avx512f avx512_vnni", False, "float32"),  # the measured decision (local.AUTO_INT8): fp32 stays
])
def test_auto_picks_int8_exactly_on_vnni_without_bf16(monkeypatch, flags, auto_int8, expected):
    monkeypatch.setattr(cpu, "cpu_features", lambda: cpu.CpuFeatures("a CPU", frozenset(flags.split())))
    monkeypatch.setattr(local, "AUTO_INT8", auto_int8)
    assert local.resolve_precision("auto", "cpu") == expected
    assert local.resolve_dtype("auto", "cpu") == (torch.bfloat16 if expected == "bfloat16" else torch.float32)
    # training never runs in int8: a fine-tune arm's `auto` there is fp32 compute
    assert FinetuneArm(dtype="auto").bf16("cpu") == (expected == "bfloat16")
    assert local.resolve_precision("int8", "cpu") == "int8"  # by hand, whatever the flags


def _scores(backend):
    chats = [p for p in PROMPTS for _ in LABELS]
    flat = backend.loglikelihood(chats, LABELS * len(PROMPTS))
    return torch.tensor([s.logprob for s in flat]).view(len(PROMPTS), len(LABELS))


def test_int8_scores_and_generation_agree_with_fp32_on_a_sharp_model(sharp_model_dir, one_thread):
    fp32 = load_backend(ModelSpec(str(sharp_model_dir), dtype="float32", device="cpu"))
    int8 = load_backend(ModelSpec(str(sharp_model_dir), dtype="int8", device="cpu"))
    assert int8.info.dtype == "int8" and int8.info.parameters == fp32.info.parameters
    # every decoder linear is int8 (2 layers x 7); the tied vocabulary head stays the fp32 embedding
    assert quantize.quantized_linears(int8.model) == 14
    assert all(m.smooth is not None for m in int8.model.modules() if isinstance(m, quantize.Int8Linear))
    assert isinstance(int8.model.get_output_embeddings(), torch.nn.Linear)
    ref, got = _scores(fp32), _scores(int8)
    assert not torch.equal(ref, got)  # quantised for real ...
    assert torch.equal(ref.argmax(1), got.argmax(1))  # ... and every prompt's best label is fp32's
    assert (ref - got).abs().max() < 0.05 * ref.abs().max()
    config = GenerationConfig(max_new_tokens=8)
    pairs = list(zip(fp32.generate(PROMPTS, config), int8.generate(PROMPTS, config)))
    # every answer starts as fp32's; a random model's later greedy steps meet near-ties, where any
    # rounding (bf16's too) may pick the other token, so whole answers agree on most prompts, not all
    assert all(a.text[:2] == b.text[:2] for a, b in pairs)
    assert sum(a.text == b.text for a, b in pairs) >= len(PROMPTS) - 2


@pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing:FutureWarning")  # peft wrapping, not ours
def test_int8_evaluates_a_merged_lora_adapter(sharp_model_dir, tmp_path, one_thread):
    from peft import LoraConfig, get_peft_model

    model, tokenizer, _ = load_model(ModelSpec(str(sharp_model_dir), dtype="float32", device="cpu"))
    torch.manual_seed(0)
    peft_model = get_peft_model(model, LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False))
    adapter = tmp_path / "adapter"
    peft_model.save_pretrained(adapter)
    tokenizer.save_pretrained(adapter)
    (adapter / "tuneoff.json").write_text(json.dumps({"base": str(sharp_model_dir)}))
    fp32 = load_backend(ModelSpec(str(adapter), dtype="float32", device="cpu"))
    int8 = load_backend(ModelSpec(str(adapter), dtype="int8", device="cpu"))
    base = load_backend(ModelSpec(str(sharp_model_dir), dtype="int8", device="cpu"))
    assert quantize.quantized_linears(int8.model) == 14  # merged first: no adapter layers left to wrap
    ref, got = _scores(fp32), _scores(int8)
    assert not torch.equal(got, _scores(base))  # the adapter's change survives quantisation
    assert torch.equal(ref.argmax(1), got.argmax(1))
    with pytest.raises(TuneoffError, match="evaluation"):
        load_model(ModelSpec(str(adapter), dtype="int8", device="cpu"), trainable=True)
    from tuneoff.finetune.outputs import merge

    with pytest.raises(TuneoffError, match="evaluation precision") as info:  # int8 is never stored
        merge(adapter, tmp_path / "merged", dtype="int8")
    assert info.value.field == "dtype" and not (tmp_path / "merged").exists()


def test_int8_refuses_clearly_where_it_cannot_run(tiny_llama, monkeypatch):
    model, _ = tiny_llama
    with pytest.raises(TuneoffError) as info:
        quantize.quantize_int8(model, device="cuda")
    assert info.value.field == "dtype" and "CPU only" in str(info.value)

    def no_int8(*args):
        raise RuntimeError("_int_mm: not implemented for this CPU")

    quantize.check_int8_support.cache_clear()
    monkeypatch.setattr(torch, "_int_mm", no_int8)
    try:
        with pytest.raises(TuneoffError) as info:
            quantize.quantize_int8(model)
        assert info.value.field == "dtype" and "int8 matmuls" in str(info.value) and "float32" in info.value.hint
        assert quantize.quantized_linears(model) == 0  # refused before touching the model
    finally:
        quantize.check_int8_support.cache_clear()


def test_smoothing_keeps_the_product_and_shrinks_the_error_of_an_outlier_channel():
    torch.manual_seed(0)
    linear = torch.nn.Linear(64, 32, bias=True)
    x = torch.randn(16, 64)
    x[:, 3] *= 80.0  # one channel far larger than the rest, as in LLM activations
    exact = linear(x)
    plain = quantize.Int8Linear(linear)(x)
    smoothed = quantize.Int8Linear(linear, act_max=x.abs().amax(dim=0), alpha=0.5)
    assert smoothed.smooth is not None and "smoothed" in smoothed.extra_repr()
    error = (smoothed(x) - exact).abs().mean()
    assert error < 0.5 * (plain - exact).abs().mean()  # the outlier no longer takes each token's int8 range
    assert error / exact.abs().mean() < 0.02


def test_calibration_records_every_layers_input_maxima(tiny_llama):
    model, tokenizer = tiny_llama
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear) and m is not model.get_output_embeddings()]
    maxima = quantize.activation_maxima(model, tokenizer, linears)
    assert set(maxima) == set(linears) and all(v.shape == (m.in_features,) for m, v in maxima.items())
    assert all(torch.isfinite(v).all() and (v > 0).any() for v in maxima.values())
    quantize.quantize_int8(model, tokenizer=tokenizer)
    assert all(m.smooth is not None for m in model.modules() if isinstance(m, quantize.Int8Linear))
