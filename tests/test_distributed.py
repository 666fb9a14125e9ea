"""Fine-tuning on several processes (accelerate, DDP over gloo on this CPU), and the device options.

Fast here: how a micro-batch is split, the gradient that N processes average to (simulated in one
process), the launcher's arguments and errors, device and attention resolution, the compile switch.
The real 2-process runs take ~40 s on 2 cores and run with ONE command:

    OMP_NUM_THREADS=1 .venv/bin/python -m pytest -q -m distributed tests/test_distributed.py

GPU tests skip without CUDA.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tuneoff.config.specs import from_dict
from tuneoff.errors import TuneoffError
from tuneoff.finetune import FinetuneArm, run_finetune
from tuneoff.finetune.checkpoint import MARKER, complete_checkpoints
from tuneoff.finetune.collate import encode_all
from tuneoff.finetune.loop import Loop
from tuneoff.finetune.methods import prepare_model
from tuneoff.finetune.parallel import Processes, launch
from tuneoff.store import Store

from test_finetune import toy_task

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_thread")
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def arm(**kw) -> FinetuneArm:
    base = dict(name="t", method="lora", lora={"r": 4, "alpha": 8, "dropout": 0.0}, batch_size=4, grad_accum=2,
                epochs=2, learning_rate=1e-2, warmup_ratio=0.0, save_steps=1, max_length=64)
    return from_dict(FinetuneArm, {**base, **kw})


# -- one process of N, simulated: what each computes and what DDP's average gives ---------------

class Rank(Processes):
    """Process `rank` of `count` without a process group: what it computes alone (DDP would then
    average the gradients over the processes)."""

    def __init__(self, rank: int, count: int):
        super().__init__(None)
        self._rank, self._count = rank, count

    rank = property(lambda self: self._rank)
    count = property(lambda self: self._count)
    is_main = property(lambda self: self._rank == 0)


def test_one_process_is_the_identity():
    one = Processes()
    assert (one.rank, one.count, one.is_main, one.device()) == (0, 1, True, None)
    assert one.shard([5, 2, 7]) == ([5, 2, 7], 1.0)
    assert one.sum([1.5, 3]) == [1.5, 3] and one.share("x") == "x" and one.gather("x") == ["x"]


def test_processes_take_disjoint_parts_that_cover_each_micro_batch():
    batch = [9, 4, 7, 1, 3]
    parts = [Rank(r, 2).shard(batch) for r in range(2)]
    assert [p for p, _ in parts] == [[9, 7, 3], [4, 1]] and [w for _, w in parts] == [1.0, 1.0]
    # a last micro-batch smaller than the process count: the third process computes one example, weighted 0
    assert Rank(2, 3).shard([8, 6]) == ([8], 0.0)


@pytest.mark.filterwarnings("ignore:Seems like `optimizer.step\\(\\)` has been overridden")
def test_the_average_of_the_processes_gradients_is_the_one_process_gradient(tiny_llama, tmp_path):
    model, tok = tiny_llama
    train, _ = encode_all(tok, toy_task(11).train, lambda ex: [{"role": "user", "content": ex.input}], 64)
    a = arm(method="full", max_steps=1, batch_size=3, grad_accum=2, max_grad_norm=0.0)  # 3 + 3 examples, uneven
    lm = prepare_model(model, a)

    def gradient(group: Processes) -> dict[str, torch.Tensor]:
        lm.zero_grad(set_to_none=True)
        loop = Loop(lm, train, [], a, tmp_path / f"ck{group.rank}{group.count}", tok.pad_token_id,
                    torch.device("cpu"), processes=group)
        seen = {}
        loop.optimizer.step = lambda: seen.update({n: p.grad.clone() for n, p in lm.named_parameters()})
        loop.run()
        return seen

    alone = gradient(Processes())
    for count in (2, 4):  # 4 processes on 3-example micro-batches: one of them computes a weighted-out example
        parts = [gradient(Rank(r, count)) for r in range(count)]
        for name, value in alone.items():
            averaged = sum(p[name] for p in parts) / count  # what DDP's all-reduce gives every process
            assert torch.allclose(averaged, value, rtol=1e-5, atol=1e-7), (count, name)


# -- the launcher ---------------------------------------------------------------------------------

def test_launch_runs_this_command_as_n_processes_through_accelerate(monkeypatch, tmp_path):
    import accelerate.commands.launch as accelerate_launch

    seen = []
    monkeypatch.setattr(accelerate_launch, "launch_command", lambda args: seen.append(args))
    launch(["finetune", "task.yaml", "--arm", "lora"], 2)
    args = seen[0]
    assert args.num_processes == 2 and args.multi_gpu and args.module  # torchrun; on a CPU: gloo
    assert args.training_script == "tuneoff" and args.training_script_args == ["finetune", "task.yaml", "--arm", "lora"]
    config = tmp_path / "fsdp.yaml"
    config.write_text("compute_environment: LOCAL_MACHINE\ndistributed_type: FSDP\nnum_processes: 2\n")
    launch(["finetune"], 2, config)
    assert seen[1].config_file == str(config) and not seen[1].multi_gpu  # the config chooses its launcher


def test_launch_errors_are_one_line_that_says_resume(monkeypatch, tmp_path):
    import accelerate.commands.launch as accelerate_launch
    from types import SimpleNamespace

    class ChildFailed(Exception):
        failures = {1: SimpleNamespace(exitcode=-9)}

    def fail(args):
        raise ChildFailed("torchrun's long report")

    monkeypatch.setattr(accelerate_launch, "launch_command", fail)
    with pytest.raises(TuneoffError, match="process 1 was killed \\(signal 9\\)") as info:
        launch(["finetune"], 2)
    assert "--resume" in info.value.render()
    with pytest.raises(TuneoffError, match="need 2 or more"):
        launch(["finetune"], 1)
    with pytest.raises(TuneoffError, match="no such accelerate config"):
        launch(["finetune"], 2, tmp_path / "missing.yaml")


def test_outside_a_launched_group_a_process_trains_alone(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert Processes.from_environment().accelerator is None


@pytest.mark.parametrize("kind", ["FSDP", "DEEPSPEED"])
def test_sharded_configs_are_refused_before_training(monkeypatch, kind):
    monkeypatch.setenv("WORLD_SIZE", "2")  # as accelerate launch sets them for such a config
    monkeypatch.setenv(f"ACCELERATE_USE_{kind}", "true")
    with pytest.raises(TuneoffError, match=f"accelerate's {kind} is not supported") as info:
        Processes.from_environment()
    assert "MULTI_GPU" in info.value.render()


# -- devices, attention kernels, compile -------------------------------------------------------------

def test_device_options_are_checked_and_resolved():
    from tuneoff.models import ModelSpec
    from tuneoff.models.local import resolve_device

    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu") == resolve_device(None)
    assert resolve_device("cpu") == "cpu"
    assert ModelSpec("x", device="cuda:1").device == "cuda:1"  # checked for form here, for presence at load
    for bad in ("gpu", "cuda:x", "CPU0"):
        with pytest.raises(TuneoffError, match="unknown device") as info:
            arm(device=bad)
        assert "cuda:N" in info.value.render()
    if not torch.cuda.is_available():
        with pytest.raises(TuneoffError, match="no CUDA device"):
            resolve_device("cuda")
    with pytest.raises(TuneoffError, match=r"'cuda:99' is not on this machine"):
        resolve_device("cuda:99")


def test_an_experiment_names_its_evaluation_device():
    from tuneoff.config.experiment import Experiment

    spec = {"name": "e", "task": {"name": "t", "train": "t.jsonl"}, "arms": [{"name": "z", "prompt": {}}]}
    assert from_dict(Experiment, spec).device == "auto"
    assert from_dict(Experiment, {**spec, "device": "cuda:1"}).device == "cuda:1"
    with pytest.raises(TuneoffError, match="unknown device"):
        from_dict(Experiment, {**spec, "device": "gpu"})


def test_flash_attention_falls_back_to_sdpa_without_cuda_or_the_package(tiny_model_dir):
    from tuneoff.models import ModelSpec, load_model
    from tuneoff.models.local import resolve_attention

    assert resolve_attention("auto", "cpu") is None and resolve_attention("eager", "cpu") == "eager"
    with pytest.raises(TuneoffError, match="unknown attention") as info:
        resolve_attention("flash_attention2", "cpu")
    assert "flash_attention_2" in info.value.render()
    with pytest.warns(UserWarning, match="flash_attention_2: it needs a CUDA device; using sdpa"):
        model, _, info = load_model(ModelSpec(str(tiny_model_dir), device="cpu", attn_implementation="flash_attention_2"))
    assert model.config._attn_implementation == "sdpa" == info.extra["attention"]
    eager, _, _ = load_model(ModelSpec(str(tiny_model_dir), device="cpu", attn_implementation="eager"))
    assert eager.config._attn_implementation == "eager"


def test_attention_kernels_train_the_same_and_stay_out_of_the_fingerprint(tiny_model_dir, tmp_path):
    store = Store(tmp_path / "runs.sqlite")
    runs = {impl: run_finetune(toy_task(), arm(attn_implementation=impl, device="cpu"), str(tiny_model_dir),
                               tmp_path / impl, store) for impl in ("auto", "eager")}
    losses = {impl: [e["loss"] for e in store.training_events(r.run_id, "train")] for impl, r in runs.items()}
    assert max(abs(x - y) for x, y in zip(losses["auto"], losses["eager"])) < 1e-5
    fingerprints = {json.loads((r.output_dir / "tuneoff.json").read_text())["fingerprint"] for r in runs.values()}
    assert len(fingerprints) == 1  # a run resumes under another kernel or device
    assert runs["auto"].stats.device == "cpu" and runs["auto"].stats.processes == 1


def test_compile_compiles_the_decoder_in_place(tiny_model_dir, tmp_path, monkeypatch):
    compiled = []
    monkeypatch.setattr(torch.nn.Module, "compile", lambda self, *a, **k: compiled.append(type(self).__name__))
    result = run_finetune(toy_task(), arm(compile=True), str(tiny_model_dir), tmp_path / "out",
                          Store(tmp_path / "runs.sqlite"))
    assert compiled == ["LlamaModel"] and result.stats.steps == 4  # the decoder the loss calls, in place


# -- the GPU path (skipped without CUDA) ---------------------------------------------------------

@cuda
def test_training_on_cuda_uses_bf16_autocast_where_the_gpu_has_it(tiny_model_dir, tmp_path):
    before = load_file(str(tiny_model_dir / "model.safetensors"))
    result = run_finetune(toy_task(), arm(method="full", dtype="auto", device="cuda"), str(tiny_model_dir),
                          tmp_path / "out", Store(tmp_path / "runs.sqlite"))
    assert result.stats.device.startswith("cuda") and result.stats.final_loss < 50
    after = load_file(str(result.output_dir / "model.safetensors"))
    assert any(not torch.equal(before[k], after[k].to(before[k].dtype)) for k in before)
    assert FinetuneArm(dtype="auto").bf16("cuda") == torch.cuda.is_bf16_supported()


@cuda
def test_cuda_kernels_and_compile_train_like_eager(tiny_model_dir, tmp_path):
    from transformers.utils import is_flash_attn_2_available

    store = Store(tmp_path / "runs.sqlite")
    kinds = {"eager": {"attn_implementation": "eager"}, "sdpa": {"attn_implementation": "sdpa"},
             "compiled": {"compile": True}}
    if is_flash_attn_2_available():
        kinds["flash"] = {"attn_implementation": "flash_attention_2"}
    losses = {}
    for name, options in kinds.items():
        r = run_finetune(toy_task(), arm(device="cuda", dtype="bfloat16", **options), str(tiny_model_dir),
                         tmp_path / name, store)
        losses[name] = [e["loss"] for e in store.training_events(r.run_id, "train")]
    for name, curve in losses.items():  # bf16 matmuls: kernels agree to bf16's precision, not fp32's
        assert max(abs(x - y) for x, y in zip(curve, losses["eager"])) < 2e-2, name


# -- real processes (gloo): behind -m distributed ----------------------------------------------------

REVIEWS = ["the movie was great", "a dull boring film", "wonderful acting", "what a waste of time",
           "great and wonderful", "boring", "the acting was great", "a waste", "wonderful film", "dull",
           "great movie", "a boring waste of time"]


def write_task(tmp_path: Path, n: int, options: str) -> tuple[Path, Path]:
    rows = [{"prompt": r, "completion": "positive" if i % 2 == 0 else "negative"}
            for i, r in enumerate((REVIEWS * (n // len(REVIEWS) + 1))[:n])]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "task.yaml").write_text("name: toy\ntrain: train.jsonl\ninstruction: classify the sentiment\n")
    (tmp_path / "arm.yaml").write_text(options)
    return tmp_path / "task.yaml", tmp_path / "arm.yaml"


def tuneoff(tmp_path: Path, *args: str, **popen) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "tuneoff", *args], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen)


def finished(proc: subprocess.Popen, timeout: float = 300) -> str:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out[-3000:]
    return out


def curves(store: Store) -> dict[str, list[float]]:
    return {r["arm"] + str(r["id"]): [e["loss"] for e in store.training_events(r["id"], "train")]
            for r in store.runs(10)}


@pytest.mark.distributed
def test_two_processes_follow_the_one_process_loss_curve(tiny_model_dir, tmp_path):
    task, arm_file = write_task(tmp_path, 30, "method: lora\nlora: {r: 4, alpha: 8, dropout: 0.0}\nbatch_size: 4\n"
                                "grad_accum: 2\nepochs: 2\nlearning_rate: 0.01\nwarmup_ratio: 0.0\nmax_length: 64\n")
    common = ["finetune", str(task), "--arm", str(arm_file), "-m", str(tiny_model_dir), "--store", "runs.sqlite"]
    began = time.perf_counter()
    finished(tuneoff(tmp_path, *common, "--output", "one"))
    one_s = time.perf_counter() - began
    out = finished(tuneoff(tmp_path, *common, "--output", "two", "--num-processes", "2"))
    two_s = time.perf_counter() - began - one_s
    assert "2 processes" in out
    store = Store(tmp_path / "runs.sqlite")
    one, two = (r for r in sorted(store.runs(10), key=lambda r: r["id"]))
    x = [e["loss"] for e in store.training_events(one["id"], "train")]
    y = [e["loss"] for e in store.training_events(two["id"], "train")]
    deviation = max(abs(a - b) for a, b in zip(x, y))
    print(f"\n1 vs 2 processes: {len(x)} steps, max loss deviation {deviation:.2e}; "
          f"wall {one_s:.1f} s vs {two_s:.1f} s (process start included)")
    assert len(x) == len(y) == 6 and deviation < 1e-5  # measured 2e-7: float summation order only
    w1, w2 = (load_file(str(tmp_path / d / "adapter_model.safetensors")) for d in ("one", "two"))
    assert max((w1[k] - w2[k]).abs().max().item() for k in w1) < 1e-5
    s1, s2 = (json.loads((tmp_path / d / "tuneoff.json").read_text())["stats"] for d in ("one", "two"))
    assert (s1["tokens"], s1["label_tokens"], s1["processes"]) == (s2["tokens"], s2["label_tokens"], 1) and \
        s2["processes"] == 2


def workers_of(launcher: int) -> dict[int, int]:
    """rank -> pid of the training processes torchrun started under the launcher."""
    found = {}
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == launcher:
                env = dict(v.split("=", 1) for v in (entry / "environ").read_text().split("\0") if "=" in v)
                found[int(env["RANK"])] = int(entry.name)
        except (OSError, KeyError, ValueError, IndexError):
            continue
    return found


@pytest.mark.distributed
def test_a_killed_worker_leaves_a_checkpoint_that_resume_finishes_exactly(tiny_model_dir, tmp_path):
    # dropout > 0: the resumed steps draw the same masks in each process only if every RNG is restored
    task, arm_file = write_task(tmp_path, 48, "method: lora\nlora: {r: 4, alpha: 8, dropout: 0.2}\nbatch_size: 2\n"
                                "epochs: 2\nlearning_rate: 0.01\nmax_length: 64\nsave_steps: 2\n")
    common = ["finetune", str(task), "--arm", str(arm_file), "-m", str(tiny_model_dir), "--num-processes", "2"]
    finished(tuneoff(tmp_path, *common, "--output", "straight", "--store", "straight.sqlite"))
    run = tuneoff(tmp_path, *common, "--output", "killed", "--store", "killed.sqlite")
    deadline = time.monotonic() + 240
    while not any(int(p.name[5:]) >= 6 for p in complete_checkpoints(tmp_path / "killed" / "checkpoints")):
        assert run.poll() is None and time.monotonic() < deadline, "the run ended before it could be killed"
        time.sleep(0.02)
    os.kill(workers_of(run.pid)[0], signal.SIGKILL)  # the main process: the one that writes
    out, _ = run.communicate(timeout=120)
    assert run.returncode != 0 and "process 0 was killed (signal 9)" in out and "--resume" in out
    assert not (tmp_path / "killed" / "tuneoff.json").exists()
    kept = complete_checkpoints(tmp_path / "killed" / "checkpoints")
    assert kept and all((p / MARKER).exists() and (p / "rng-1.pt").exists() for p in kept)
    finished(tuneoff(tmp_path, *common, "--output", "killed", "--store", "killed.sqlite", "--resume"))
    a, b = (load_file(str(tmp_path / d / "adapter_model.safetensors")) for d in ("straight", "killed"))
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-6
    steps = [e["step"] for e in Store(tmp_path / "killed.sqlite").training_events(1, "train")]
    assert steps == list(range(1, len(steps) + 1))  # one loss curve, no step recorded twice
    straight = Store(tmp_path / "straight.sqlite").training_events(1, "train")
    assert len(steps) == len(straight)
    assert max(abs(x["loss"] - y["loss"]) for x, y in
               zip(straight, Store(tmp_path / "killed.sqlite").training_events(1, "train"))) < 1e-6
