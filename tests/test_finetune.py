"""Fine-tuning on the tiny random Llama: what each method trains, masking, truncation, exact resume,
NaN handling, atomic checkpoints, and outputs that load as models (adapter, merged, full)."""

import io
import json
from contextlib import nullcontext
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tuneoff.data import Example
from tuneoff.errors import TuneoffError
from tuneoff.finetune import IGNORE, FinetuneArm, NonFiniteLoss, merge, run_finetune
from tuneoff.finetune.checkpoint import MARKER, TrainState, complete_checkpoints, save_checkpoint
from tuneoff.finetune.collate import collate, encode_all, encode_example
from tuneoff.finetune.loop import Loop, build_optimizer
from tuneoff.finetune.methods import count_params, prepare_model
from tuneoff.models import ModelSpec, load_model
from tuneoff.config.specs import from_dict
from tuneoff.store import Store
from tuneoff.config.task import TaskData, TaskSpec

REVIEWS = ["the movie was great", "a dull boring film", "wonderful acting", "what a waste of time",
           "great and wonderful", "boring", "the acting was great", "a waste", "wonderful film", "dull",
           "great movie", "a boring waste of time"]


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.one_thread


def toy_task(n: int = 12) -> TaskData:
    train = [Example(input=r, target="positive" if i % 2 == 0 else "negative", id=f"toy:{i}")
             for i, r in enumerate((REVIEWS * 3)[:n])]
    spec = TaskSpec(name="toy", train="toy.jsonl", instruction="classify the sentiment")
    return TaskData(spec=spec, train=train, dev=train[:4], test=train[:4], labels=["negative", "positive"])


def arm(**kw) -> FinetuneArm:
    base = dict(name="t", batch_size=2, grad_accum=2, epochs=2, learning_rate=1e-2, warmup_ratio=0.0,
                save_steps=1, max_length=64)
    return from_dict(FinetuneArm, {**base, **kw})


def params(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


# -- the arm as data ---------------------------------------------------------------------------

def test_arm_builds_from_yaml_dict_and_names_bad_fields():
    a = from_dict(FinetuneArm, {"method": "freeze", "freeze": {"train_last_n": 2, "train_head": True},
                                "lora": {"target_modules": ["q_proj"]}, "epochs": 2})
    assert a.freeze.train_last_n == 2 and a.lora.target_modules == ["q_proj"] and a.lr == 5e-5
    assert FinetuneArm().lr == 2e-4 and "freeze" not in FinetuneArm().to_dict()
    with pytest.raises(TuneoffError, match="early_stopping_patience"):
        FinetuneArm(early_stopping_patience=2)
    with pytest.raises(TuneoffError, match="lora.r"):
        from_dict(FinetuneArm, {"lora": {"r": 0}})
    with pytest.raises(TuneoffError, match="did you mean 'learning_rate'"):
        from_dict(FinetuneArm, {"learning_rat": 1e-3})
    with pytest.raises(TuneoffError, match="freeze.train_last_n"):
        from_dict(FinetuneArm, {"method": "freeze", "freeze": {"train_last_n": 0}})


# -- tokens and labels -------------------------------------------------------------------------

def test_completion_only_masks_prompt_and_padding(tiny_tokenizer):
    tok = tiny_tokenizer
    prompt = [{"role": "user", "content": "great movie"}]
    enc = encode_example(tok, prompt, "positive", max_length=64)
    head = tok.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    assert head == "<|im_start|>user\ngreat movie<|im_end|>\n<|im_start|>assistant\n"
    n_prompt = len(tok(head, add_special_tokens=False)["input_ids"])
    completion = tok("positive<|im_end|>\n", add_special_tokens=False)["input_ids"]
    assert enc.labels[:n_prompt] == [IGNORE] * n_prompt  # every prompt position carries no loss
    assert enc.labels[n_prompt:] == completion == enc.input_ids[n_prompt:]
    assert tok.decode(enc.input_ids[n_prompt:]) == "positive<|im_end|>\n" and enc.completion_tokens == len(completion)
    assert encode_example(tok, prompt, "positive", 64, completion_only=False).labels == enc.input_ids
    short = encode_example(tok, [{"role": "user", "content": "ok"}], "negative", 64)
    batch = collate([enc, short], pad_id=tok.pad_token_id, device="cpu")
    pad = len(enc.input_ids) - len(short.input_ids)
    assert pad > 0 and batch["labels"][1, -pad:].tolist() == [IGNORE] * pad
    assert batch["attention_mask"][1, -pad:].sum() == 0 and batch["input_ids"][1, -pad:].eq(tok.pad_token_id).all()


def test_default_prompt_is_system_then_context_then_instruction_and_input():
    from tuneoff.finetune import default_formatter

    ex = Example(input="great film", target="positive", context=({"role": "user", "content": "hi"},
                                                                   {"role": "assistant", "content": "hello"}))
    assert default_formatter("Classify.", system="Be brief.")(ex) == [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"}, {"role": "user", "content": "Classify.\n\ngreat film"}]
    assert default_formatter()(ex)[-1] == {"role": "user", "content": "great film"}


def test_long_prompts_lose_their_oldest_tokens_first(tiny_tokenizer):
    prompt = [{"role": "user", "content": "the movie was great and the acting was wonderful " * 20}]
    full = encode_example(tiny_tokenizer, prompt, "positive", max_length=10_000)
    enc = encode_example(tiny_tokenizer, prompt, "positive", max_length=40)
    assert len(enc.input_ids) == 40 and enc.prompt_truncated and not enc.completion_truncated
    assert enc.input_ids == full.input_ids[-40:] and enc.labels == full.labels[-40:]


def test_completion_cut_away_is_dropped_counted_and_never_nan(tiny_model_dir, tmp_path):
    task = toy_task(8)
    long = Example(input="the movie was great and the acting was wonderful " * 20, target="positive", id="toy:long")
    task.train.append(long)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    encoded, report = encode_all(tok, task.train, lambda ex: [{"role": "user", "content": ex.input}], 48, "right")
    assert report.dropped_no_completion == 1 and report.dropped_ids == ["toy:long"] and report.kept == 8
    store = Store(tmp_path / "runs.sqlite")
    result = run_finetune(task, arm(truncation="right", max_length=48, epochs=1), str(tiny_model_dir),
                          tmp_path / "out", store)
    assert result.stats.dropped_examples == 1 and result.stats.examples == 8
    losses = [e["loss"] for e in store.training_events(result.run_id, "train")]
    assert losses and all(torch.isfinite(torch.tensor(losses)))


# -- what each method trains -------------------------------------------------------------------

@pytest.mark.parametrize("method, freeze", [("lora", None), ("freeze", False), ("freeze", True), ("full", None)])
def test_each_method_changes_exactly_its_parameters(tiny_llama, tmp_path, method, freeze):
    model, tok = tiny_llama
    a = arm(method=method, freeze={"train_last_n": 1, "train_head": bool(freeze)}, epochs=1)
    model = prepare_model(model, a)
    before = params(model)
    train, _ = encode_all(tok, toy_task(8).train, lambda ex: [{"role": "user", "content": ex.input}], 64)
    Loop(model, train, [], a, tmp_path / "checkpoints", tok.pad_token_id, torch.device("cpu")).run()
    changed = {n for n, p in params(model).items() if not torch.equal(p, before[n])}
    names = set(before)
    if method == "lora":
        expected = {n for n in names if "lora_" in n}
        assert any("lora_B" in n for n in expected)
    elif method == "freeze":
        expected = {n for n in names if ".layers.1." in n}
        if freeze:  # the head is untied first: it trains while the input embeddings stay put
            expected |= {"lm_head.weight", "model.norm.weight"}
            assert model.lm_head.weight is not model.model.embed_tokens.weight
    else:
        expected = names
    assert changed == expected
    assert count_params(model).trainable == sum(before[n].numel() for n in expected)


# -- checkpoints and resume --------------------------------------------------------------------

class Interrupt(Exception):
    pass


def interrupt_at(step: int):
    def hook(r):
        if r.kind == "checkpoint" and r.step == step:
            raise Interrupt()
    return hook


def trained_tensors(out) -> dict[str, torch.Tensor]:
    name = "adapter_model.safetensors" if (out / "adapter_config.json").exists() else "model.safetensors"
    return load_file(str(out / name))


@pytest.mark.parametrize("method", ["lora", "full"])
def test_interrupted_and_resumed_run_ends_with_the_same_parameters(tiny_model_dir, tmp_path, method):
    task, store = toy_task(), Store(tmp_path / "runs.sqlite")
    # LoRA dropout > 0: the resumed steps draw the same dropout masks only if the RNG state is restored
    a = arm(method=method, lora={"r": 4, "alpha": 8, "dropout": 0.2}) if method == "lora" else arm(method=method)
    straight = run_finetune(task, a, str(tiny_model_dir), tmp_path / "straight", store)
    assert straight.stats.steps == 6  # 12 examples / (2 x 2) -> 3 steps/epoch, 2 epochs
    with pytest.raises(Interrupt):
        run_finetune(task, a, str(tiny_model_dir), tmp_path / "resumed", store, hooks=[interrupt_at(4)])
    with pytest.raises(TuneoffError, match="--resume"):
        run_finetune(task, a, str(tiny_model_dir), tmp_path / "resumed", store)
    with pytest.raises(TuneoffError, match="different arm"):
        run_finetune(task, arm(method=method, seed=1), str(tiny_model_dir), tmp_path / "resumed", store, resume=True)
    resumed = run_finetune(task, a, str(tiny_model_dir), tmp_path / "resumed", store, resume=True)
    assert resumed.stats.resumed_from_step == 4 and resumed.stats.steps == 6
    x, y = trained_tensors(straight.output_dir), trained_tensors(resumed.output_dir)
    assert x.keys() == y.keys()
    for name in x:
        assert torch.allclose(x[name], y[name], rtol=0, atol=1e-7), name
    steps = [e["step"] for e in store.training_events(resumed.run_id, "train")]
    assert steps == [1, 2, 3, 4, 5, 6]  # one loss curve, no replayed steps twice
    assert resumed.stats.tokens == straight.stats.tokens
    assert not (resumed.output_dir / "checkpoints").exists()


def test_checkpoints_are_atomic_and_pruned(tiny_llama, tmp_path):
    model, tok = tiny_llama
    a = arm(method="full")
    model = prepare_model(model, a)
    optimizer, scheduler = build_optimizer(model, a, 10)
    root = tmp_path / "checkpoints"
    for step in (1, 2, 3):
        save_checkpoint(root, model, optimizer, scheduler, TrainState(step=step), keep=2)
    assert [p.name for p in complete_checkpoints(root)] == ["step-000002", "step-000003"]
    (root / ".tmp-step-000004-999").mkdir()  # crashed mid-write
    (root / ".tmp-step-000004-999" / "trainable.safetensors").write_bytes(b"garbage")
    (root / "step-000005").mkdir()  # crashed between rename and marker
    (root / "step-000005" / "trainable.safetensors").write_bytes(b"garbage")
    loop = Loop(model, [], [], a, root, tok.pad_token_id, torch.device("cpu"))
    assert loop.resume() and loop.state.step == 3
    assert sorted(p.name for p in root.iterdir()) == ["step-000002", "step-000003"]
    assert all((p / MARKER).exists() for p in root.iterdir())


def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tiny_model_dir, tmp_path):
    store = Store(tmp_path / "runs.sqlite")

    def poison(r):  # after step 2's checkpoint, a weight goes bad: step 3's loss is NaN
        if r.kind == "checkpoint" and r.step == 2:
            with torch.no_grad():
                next(p for n, p in r.model.named_parameters() if "lora_B" in n).fill_(float("nan"))

    with pytest.raises(NonFiniteLoss, match="loss became nan at step 3") as info:
        run_finetune(toy_task(), arm(), str(tiny_model_dir), tmp_path / "out", store, hooks=[poison])
    assert "step-000002" in str(info.value) and "learning_rate" in info.value.render()
    kept = complete_checkpoints(tmp_path / "out" / "checkpoints")
    assert kept[-1].name == "step-000002"
    assert all(torch.isfinite(t).all() for t in load_file(str(kept[-1] / "trainable.safetensors")).values())
    run = store.runs(1)[0]
    assert run["status"] == "failed" and store.training_events(run["id"], "error")


# -- outputs -----------------------------------------------------------------------------------

def test_adapter_loads_as_a_model_and_merge_gives_the_same_logits(tiny_model_dir, tmp_path):
    from rich.console import Console

    store = Store(tmp_path / "runs.sqlite")
    console = Console(file=io.StringIO(), force_terminal=True)
    result = run_finetune(toy_task(), arm(epochs=1), str(tiny_model_dir), tmp_path / "lora", store, console=console)
    meta = json.loads((result.output_dir / "tuneoff.json").read_text())
    assert meta["base"] == str(tiny_model_dir.resolve()) and meta["method"] == "lora" and meta["arm"]["lora"]["r"] == 16
    ids = torch.tensor([[5, 17, 42, 8, 99]])
    base, _, _ = load_model(ModelSpec(str(tiny_model_dir), device="cpu"))
    tuned, _, _ = load_model(ModelSpec(str(result.output_dir), device="cpu"))
    merged_dir = merge(result.output_dir, tmp_path / "merged")
    assert not (merged_dir / "adapter_config.json").exists() and (merged_dir / "config.json").exists()
    merged, tok, _ = load_model(ModelSpec(str(merged_dir), device="cpu"))
    with torch.no_grad():
        lb, lt, lm = (m(ids).logits for m in (base, tuned, merged))
    assert not torch.allclose(lb, lt, atol=1e-4)  # the adapter does something
    assert torch.allclose(lt, lm, atol=1e-5)
    assert tok.chat_template and "loss" in console.file.getvalue()
    with pytest.raises(TuneoffError, match="not empty"):
        merge(result.output_dir, merged_dir)


def _embedded_tiny(monkeypatch, tiny_model_dir, home):
    """The tiny Llama as an embedded model whose dequantised cache is already in `home` (no GGUF needed)."""
    import shutil

    from tuneoff.models import embedded

    model = embedded.EmbeddedModel(name="tiny-test", package="tuneoff", module="tuneoff", gguf_file="none.gguf",
                                   install="-", instruct=True, description="test", hub="tuneoff-test/Tiny-Llama")
    monkeypatch.setitem(embedded.EMBEDDED, model.name, model)
    cache = home / "models" / model.name
    shutil.copytree(tiny_model_dir, cache)
    (cache / embedded.COMPLETE_MARKER).touch()
    return "embedded:tiny-test"


def test_an_adapter_travels_to_another_directory_and_tuneoff_home(tiny_model_dir, tmp_path, monkeypatch):
    import shutil

    from tuneoff.models import adapter_base

    home = tmp_path / "home-a"
    monkeypatch.setenv("TUNEOFF_HOME", str(home))
    spec = _embedded_tiny(monkeypatch, tiny_model_dir, home)
    result = run_finetune(toy_task(), arm(epochs=1), spec, tmp_path / "lora", Store(tmp_path / "runs.sqlite"))
    config = json.loads((result.output_dir / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "tuneoff-test/Tiny-Llama"  # plain peft: the hub name
    assert json.loads((result.output_dir / "tuneoff.json").read_text())["base"] == spec
    for name in ("adapter_config.json", "tuneoff.json", "README.md"):
        if (result.output_dir / name).exists():
            assert str(home) not in (result.output_dir / name).read_text(), name  # no path into this home
    ids = torch.tensor([[5, 17, 42, 8, 99]])
    with torch.no_grad():
        before = load_model(ModelSpec(str(result.output_dir), device="cpu"))[0](ids).logits

    # another machine: the adapter somewhere else, the old home gone, the model cached in a new home
    moved = shutil.move(str(result.output_dir), str(tmp_path / "elsewhere" / "my-adapter"))
    shutil.rmtree(home)
    monkeypatch.setenv("TUNEOFF_HOME", str(tmp_path / "home-b"))
    _embedded_tiny(monkeypatch, tiny_model_dir, tmp_path / "home-b")
    with torch.no_grad():
        after = load_model(ModelSpec(moved, device="cpu"))[0](ids).logits
    assert torch.allclose(before, after, atol=1e-6)

    # a peft-only copy (no tuneoff.json) names the hub; an old one, another home's cache path: both map back
    meta = Path(moved) / "tuneoff.json"
    meta.unlink()
    assert adapter_base(Path(moved)) == spec
    config["base_model_name_or_path"] = "/home/someone/.cache/tuneoff/models/tiny-test"
    (Path(moved) / "adapter_config.json").write_text(json.dumps(config))
    assert adapter_base(Path(moved)) == spec
    with torch.no_grad():
        assert torch.allclose(load_model(ModelSpec(moved, device="cpu"))[0](ids).logits, before, atol=1e-6)


def test_freeze_output_is_a_standalone_model_and_the_store_has_the_record(tiny_model_dir, tmp_path):
    store = Store(tmp_path / "runs.sqlite")
    a = arm(method="freeze", freeze={"train_last_n": 1, "train_head": True}, epochs=1)
    result = run_finetune(toy_task(), a, str(tiny_model_dir), tmp_path / "freeze", store)
    model, _, _ = load_model(ModelSpec(str(result.output_dir), device="cpu"))
    base, _, _ = load_model(ModelSpec(str(tiny_model_dir), device="cpu"))
    assert torch.equal(model.model.embed_tokens.weight, base.model.embed_tokens.weight)
    assert not torch.equal(model.lm_head.weight, base.lm_head.weight)
    s = result.stats
    assert s.steps == 3 and s.trainable_parameters < s.total_parameters and s.flops > 0
    assert s.tokens > s.label_tokens > 0 and s.padded_tokens >= s.tokens and s.peak_memory_mb > 0
    metrics = store.metrics(result.run_id)
    assert metrics["train_trainable_parameters"]["value"] == s.trainable_parameters
    assert len(store.training_events(result.run_id, "train")) == 3 and store.run(result.run_id)["status"] == "done"
    with pytest.raises(TuneoffError, match="already holds a finished"):
        run_finetune(toy_task(), a, str(tiny_model_dir), tmp_path / "freeze", store)


def test_early_stopping_returns_the_best_weights(tiny_model_dir, tmp_path, monkeypatch):
    import tuneoff.finetune.loop as loop_module

    scripted = iter([1.0, 0.5, 0.7, 0.9, 0.1])  # best at step 2, then two worse evals: stop at step 4
    monkeypatch.setattr(loop_module, "eval_loss", lambda *a, **k: next(scripted))
    snapshots = {}

    def snapshot(r):
        if r.kind == "train":
            snapshots[r.step] = {n: p.detach().clone() for n, p in r.model.named_parameters() if p.requires_grad}

    a = arm(eval_steps=1, early_stopping_patience=2, epochs=3)
    result = run_finetune(toy_task(), a, str(tiny_model_dir), tmp_path / "es", Store(tmp_path / "r.sqlite"),
                          hooks=[snapshot])
    assert result.stats.stopped_early and result.stats.steps == 4 and result.stats.best_step == 2
    saved = trained_tensors(result.output_dir)
    best = {n.replace(".default", ""): t for n, t in snapshots[2].items()}  # peft drops the adapter name on save
    assert saved.keys() == best.keys()
    assert all(torch.equal(saved[n], best[n]) for n in saved)
    assert not all(torch.equal(saved[n], snapshots[4][n.replace(".weight", ".default.weight")]) for n in saved)


def test_loss_on_label_positions_equals_the_models_own_loss(tiny_llama):
    from tuneoff.finetune.collate import label_tokens
    from tuneoff.finetune.loop import loss_sum

    model, tok = tiny_llama
    items, _ = encode_all(tok, toy_task(4).train, lambda ex: [{"role": "user", "content": ex.input}], 64)
    batch = collate(items, tok.pad_token_id, "cpu")
    with torch.no_grad():  # our head-on-label-positions shortcut vs. transformers' full-logits loss
        ours = loss_sum(model, batch, nullcontext()) / label_tokens(items)
        theirs = model(**batch).loss
    assert torch.allclose(ours, theirs, atol=1e-6)


@pytest.mark.filterwarnings("ignore:Seems like `optimizer.step\\(\\)` has been overridden")
def test_gradient_accumulation_equals_one_big_batch(tiny_llama, tmp_path):
    model, tok = tiny_llama
    train, _ = encode_all(tok, toy_task(8).train, lambda ex: [{"role": "user", "content": ex.input}], 64)
    grads = []
    for batch_size, accum in ((4, 1), (2, 2)):  # same example order: 2 x 2 micro-batches == 4
        a = arm(method="full", max_steps=1, batch_size=batch_size, grad_accum=accum, group_by_length=False,
                max_grad_norm=0.0)
        loop = Loop(prepare_model(model, a), train, [], a, tmp_path / f"ck{accum}", tok.pad_token_id,
                    torch.device("cpu"))
        # compare the gradient the optimizer sees (Adam would magnify float noise in the weights)
        loop.optimizer.step = lambda: grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
        loop.run()
    assert len(grads) == 2
    for name, value in grads[0].items():
        assert torch.allclose(value, grads[1][name], rtol=1e-5, atol=1e-7), name


# -- speed changes that must not change the method ---------------------------------------------
def test_packed_dropout_is_inverted_dropout_at_rate_p():
    from tuneoff.finetune.speed import PackedDropout

    drop = PackedDropout(0.05)
    x = torch.ones(1000, 1000)
    torch.manual_seed(0)
    y = drop(x)
    kept = y != 0
    # 1e6 Bernoulli(0.05) draws: the rate is within 5 standard deviations (2.2e-4) of p
    assert abs(1 - kept.float().mean().item() - 0.05) < 5 * (0.05 * 0.95 / 1e6) ** 0.5
    assert torch.allclose(y[kept], torch.full_like(y[kept], 1 / 0.95))
    torch.manual_seed(0)
    assert torch.equal(drop(x), y)  # torch's generator: seeded, replayable on resume
    assert torch.equal(drop.eval()(x), x)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_speed_up_swaps_lora_dropout_and_stores_only_frozen_linears_in_bf16(tiny_llama, dtype):
    from tuneoff.finetune.speed import PackedDropout, speed_up

    model, _ = tiny_llama
    a = arm(method="lora", dtype=dtype, lora={"r": 4, "alpha": 8, "dropout": 0.1})
    lm = prepare_model(model, a)
    speed_up(lm, a)
    drops = [m for m in lm.modules() if isinstance(m, torch.nn.Dropout)]
    assert not drops and any(isinstance(m, PackedDropout) for m in lm.modules())
    frozen = {p.dtype for n, p in lm.named_parameters() if "base_layer" in n}
    trained = {p.dtype for p in lm.parameters() if p.requires_grad}
    others = {p.dtype for n, p in lm.named_parameters() if "base_layer" not in n and not p.requires_grad}
    assert frozen == {torch.bfloat16 if dtype == "bfloat16" else torch.float32}
    assert trained == {torch.float32} and others == {torch.float32}  # adapters, norms, embeddings, head
