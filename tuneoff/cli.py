"""The command table: each command is a typed function that calls one library function.

`COMMANDS` is the single source of truth; `main()` registers it with typer, and a test checks the
table against `tuneoff --help`. A `TuneoffError` prints as one or two lines and exits 1.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Callable, Optional

import typer
from rich.console import Console
from rich.table import Table

from .errors import TuneoffError
from .models.options import DEFAULT_MODEL


console = Console()
err_console = Console(stderr=True)

SetOpt = Annotated[Optional[list[str]], typer.Option(
    "--set", metavar="KEY=VALUE",
    help="Change a field of the experiment for this run (repeatable): dotted KEY, YAML VALUE, list elements by "
         "index or name, e.g. --set dtype=fp32 --set arms.lora.finetune.n_train=128 --set 'adaptive={chunk: 32}'.")]
StoreOpt = Annotated[Optional[Path], typer.Option("--store", help="Run store (SQLite); default TUNEOFF_HOME/runs.sqlite.")]
ModelOpt = Annotated[str, typer.Option("--model", "-m", help="Model spec: embedded:NAME, a model/adapter dir, or a .gguf.")]
TaskModelOpt = Annotated[Optional[str], typer.Option(
    "--model", "-m", help="Model spec: embedded:NAME, a model/adapter dir, or a .gguf (default: the experiment's "
                          "model, the arm's own when it names one; else the embedded default).")]
DtypeOpt = Annotated[str, typer.Option("--dtype", help="float32, bfloat16, int8 (CPU evaluation), or auto (bf16 where the CPU/GPU has it).")]
DecodeOpt = Annotated[str, typer.Option("--decode", help="eager, or compiled: static KV cache + torch.compile'd "
                                                          "decode step (compiles once per shape bucket).")]
FullOpt = Annotated[bool, typer.Option("--full", help="Print every dimension of the comparison for every arm "
                                                    "(wide: needs ~200 columns), not the compact summary.")]


def _store(path: Path | None):
    from .store import Store

    return Store(path)


def models() -> None:
    """List the embedded models: installed or not, cached or not."""
    from .models.embedded import EMBEDDED

    table = Table(title="Embedded models")
    for col in ("spec", "installed", "cached", "description"):
        table.add_column(col)
    for m in EMBEDDED.values():
        table.add_row(f"embedded:{m.name}", "yes" if m.installed() else f"no: {m.install}",
                      "yes" if m.cached() else "no (first load dequantises, ~20-45 s)", m.description)
    console.print(table)


def ask(
    prompt: Annotated[str, typer.Argument(help="What to ask.")],
    model: ModelOpt = DEFAULT_MODEL,
    system: Annotated[Optional[str], typer.Option(help="System message (a role or persona).")] = None,
    demos: Annotated[Optional[Path], typer.Option(help="Few-shot demos: a prompt/completion or chat data file.")] = None,
    max_tokens: Annotated[int, typer.Option(help="Most tokens to generate.")] = 128,
    temperature: Annotated[float, typer.Option(help="0 = greedy; above 0 samples.")] = 0.0,
    seed: Annotated[Optional[int], typer.Option(help="Sampling seed.")] = None,
    dtype: DtypeOpt = "float32",
    engine: Annotated[str, typer.Option(help="auto (llama.cpp for GGUF models when installed), transformers, "
                                             "or llamacpp.")] = "auto",
    prompt_format: Annotated[str, typer.Option("--format", help="chat (a user message), completion (text the "
                                               "model continues), or auto: chat for chat models, completion "
                                               "for base models.")] = "auto",
    decode: DecodeOpt = "eager",
    gguf: Annotated[Optional[Path], typer.Option(help="The model's GGUF export (tuneoff export): generate on it "
                                                      "in llama.cpp.")] = None,
    store: StoreOpt = None,
) -> None:
    """Ask one prompt to a model; the call is kept in the run store."""
    from .ask import ask as run_ask
    from .models import GenerationConfig, ModelSpec, engine_of, load_backend
    from .models.chat import resolve_format

    resolve_format(prompt_format, chat_model=True)  # a misspelt format fails before the model loads
    spec = ModelSpec(model, dtype=dtype, engine=engine, decode=decode)
    db = _store(store)
    with err_console.status(f"loading {model} (a first load dequantises the GGUF: ~20 s)"):
        backend = load_backend(spec)
    if gguf is not None:
        from .models.llamacpp import attach_gguf

        attach_gguf(backend, gguf, say=lambda line: err_console.print(line, highlight=False))
    config = GenerationConfig(max_new_tokens=max_tokens, temperature=temperature, seed=seed)
    with err_console.status("generating"):
        result = run_ask(prompt, spec, db, system=system, demos_file=demos, config=config, backend=backend,
                         prompt_format=prompt_format)
    c = result.completion
    console.print(c.text)
    err_console.print(f"[dim]run {result.run_id}: {c.tokens_in} tokens in, {c.tokens_out} out, {c.seconds:.2f} s "
                      f"({engine_of(backend)}), stored in {db.path}[/dim]")


def runs(
    limit: Annotated[int, typer.Option(help="How many of the latest runs to show.")] = 30,
    store: StoreOpt = None,
) -> None:
    """List stored runs, newest first."""
    from .records import EvalSummary

    db = _store(store)
    table = Table(title=f"Runs in {db.path}")
    for col in ("id", "kind", "arm", "task", "split", "model", "status", "started", "seconds", "main metric"):
        table.add_column(col)
    for r in db.runs(limit):
        seconds = f"{r['finished_at'] - r['started_at']:.1f}" if r["finished_at"] else ""
        main = EvalSummary.from_json(r["summary_json"]).main_metric  # evaluations record their main metric
        table.add_row(str(r["id"]), r["kind"], r["arm"], r["task"], r["split"], r["model"], r["status"],
                      time.strftime("%Y-%m-%d %H:%M", time.localtime(r["started_at"])), seconds,
                      f"{main.name}={main.value:.3f}" if main and main.value is not None else "")
    console.print(table)


def validate(
    file: Annotated[Path, typer.Argument(help="Data file: JSON array, JSONL (prompt/completion or chat), CSV or TSV.")],
    input_col: Annotated[Optional[str], typer.Option("--input-col", help="Input column(s): `a|b` first present, `a,b` joined.")] = None,
    target_col: Annotated[Optional[str], typer.Option("--target-col", help="Target column (`a|b` allowed).")] = None,
    label_map: Annotated[Optional[str], typer.Option(help="Raw target -> label: `0=negative,1=positive`, JSON, or a JSON file.")] = None,
    labels: Annotated[Optional[str], typer.Option(help="Label set: `a,b,c`, a JSON list file, or one label per line.")] = None,
    max_tokens: Annotated[Optional[int], typer.Option(help="Flag examples longer than this many tokens.")] = None,
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="Model whose tokenizer counts tokens (default: the embedded default).")] = None,
    show: Annotated[int, typer.Option(help="Most problems printed per kind (0: all).")] = 20,
) -> None:
    """List every problem in a data file (file:line, named class), then a summary."""
    from .data import ColumnMapping, parse_label_map, parse_labels, validate_file

    mapping = ColumnMapping(input=input_col, target=target_col, label_map=parse_label_map(label_map))
    tokenizer = _validation_tokenizer(model, required=max_tokens is not None)
    large = file.is_file() and file.stat().st_size > LARGE_FILE_BYTES
    # a spinner only where there is a wait to see: a small file is done before it would draw
    with err_console.status(f"reading and checking {file.name}") if large else contextlib.nullcontext():
        found = validate_file(file, mapping, parse_labels(labels), max_tokens, tokenizer)
    from .terminal import print_validation

    raise typer.Exit(print_validation(found, console, show or None))


LARGE_FILE_BYTES = 2_000_000
"""`validate` shows a spinner above this size (SST-2's 67k-row train file, 3.5 MB, takes ~2 s)."""


def _validation_tokenizer(model: str | None, required: bool):
    """The tokenizer that counts `validate`'s tokens; None (count characters) when the default cannot load.

    The one place `validate` reaches for a model: the data room stays below the models room.
    """
    from .models import load_fast_tokenizer

    try:
        return load_fast_tokenizer(model) if model else load_fast_tokenizer()
    except TuneoffError as e:
        if required or model:
            raise
        console.print(f"[dim]no tokenizer ({e.message}); lengths are in characters[/dim]")
        return None


def _arm_from(file: Path, arm: str):
    """(prompt/finetune arm source, experiment or None): an arm name inside an experiment file, or an arm YAML."""
    from .config.experiment import load_experiment

    if Path(arm).suffix in (".yaml", ".yml") or Path(arm).is_file():
        return Path(arm), None
    exp = load_experiment(file)
    entry = exp.arm(arm)
    if entry is None:
        from .errors import did_you_mean

        raise TuneoffError(f"no arm '{arm}' in {file}", field="arm", hint=did_you_mean(arm, [a.name for a in exp.arms]))
    return entry, exp


def eval_arm(
    task: Annotated[Path, typer.Argument(help="A task YAML, or an experiment YAML (its task).")],
    arm: Annotated[str, typer.Option(help="An arm name in the experiment file, or a prompt-arm YAML file.")],
    model: TaskModelOpt = None,
    split: Annotated[str, typer.Option(help="train, dev or test.")] = "test",
    store: StoreOpt = None,
) -> None:
    """Run one prompt arm on a task split: metrics table in the terminal, every call in the store."""
    from .evaluate.runner import run_eval
    from .config.experiment import build_prompt_arm

    source, exp = _arm_from(task, arm)
    prompt_arm = build_prompt_arm(source, exp.task) if exp else source
    run_eval(task, prompt_arm, model=_model_of(model, source, exp), split=split, store=_store(store), console=console)


def _model_of(model: str | None, entry, exp) -> str:
    """--model, else the arm's own model, else the experiment's: an experiment file's `model:` is
    what its arms run on (it used to be ignored for the embedded default)."""
    if model:
        return model
    if exp is not None:
        return getattr(entry, "model", None) or exp.model
    return DEFAULT_MODEL


def finetune(
    task: Annotated[Path, typer.Argument(help="A task YAML, or an experiment YAML (its task).")],
    arm: Annotated[str, typer.Option(help="A fine-tune arm name in the experiment file, or a fine-tune-arm YAML.")],
    output: Annotated[Path, typer.Option(help="Where the adapter or model directory goes.")],
    model: TaskModelOpt = None,
    resume: Annotated[bool, typer.Option(help="Continue from the latest complete checkpoint in OUTPUT.")] = False,
    store: StoreOpt = None,
    num_processes: Annotated[int, typer.Option(help="Data-parallel training processes (accelerate; one GPU each, "
                                                    "or CPU processes over gloo). The global batch stays the arm's.")] = 1,
    accelerate_config: Annotated[Optional[Path], typer.Option(help="An accelerate config file (DDP settings, "
                                                                   "GPU ids) for --num-processes.")] = None,
) -> None:
    """Fine-tune a model on a task's training split (full, layer-freeze or LoRA)."""
    from .config.experiment import load_task_data
    from .config.experiment import ArmEntry, build_finetune_arm
    from .finetune import run_finetune
    from .finetune.parallel import Processes, launch, launched
    from .config.specs import read_yaml

    source, exp = _arm_from(task, arm)
    entry = source if exp else ArmEntry(name=Path(arm).stem, finetune=read_yaml(Path(arm))[0])
    if entry.finetune is None:
        raise TuneoffError(f"arm '{entry.name}' is not a fine-tune arm", field="arm")
    finetune_arm = build_finetune_arm(entry)
    if (num_processes > 1 or accelerate_config) and not launched():  # this command again, as N processes
        again = [str(task), "--arm", arm, "--output", str(output), *(["--model", model] if model else []),
                 *(["--resume"] if resume else []), *(["--store", str(store)] if store else [])]
        return launch(["finetune", *again], num_processes, accelerate_config)
    group = Processes.from_environment(finetune_arm.device)
    result = run_finetune(load_task_data(task), finetune_arm, _model_of(model, entry, exp), output,
                          _store(store) if group.is_main else None, resume=resume, console=console, processes=group)
    if not group.is_main:
        return
    s = result.stats
    console.print(f"{result.output_dir}: {s.steps} steps, {s.examples} examples, {s.tokens:,} tokens in "
                  f"{s.seconds:.1f} s ({s.tokens_per_second:.0f} tokens/s), final loss {s.final_loss:.4f}, "
                  f"{s.trainable_parameters:,} of {s.total_parameters:,} parameters trained (run {result.run_id}"
                  f"{f', {s.processes} processes' if s.processes > 1 else ''})")


def merge(
    adapter: Annotated[Path, typer.Argument(help="Adapter directory written by `tuneoff finetune` (LoRA).")],
    output: Annotated[Path, typer.Argument(help="Where the standalone merged model goes.")],
    dtype: DtypeOpt = "float32",
) -> None:
    """Write base + adapter as one standalone Hugging Face model directory."""
    from .finetune import merge as merge_adapter

    console.print(f"merged model written to {merge_adapter(adapter, output, dtype)}")


def run(
    experiment: Annotated[Path, typer.Argument(help="Experiment YAML: task, model, arms, comparison settings.")],
    set_: SetOpt = None,
    store: StoreOpt = None,
    open_report: Annotated[bool, typer.Option("--open", help="Open the HTML report when done.")] = False,
    full: FullOpt = False,
    jobs: Annotated[int, typer.Option(help="Run the experiment's units (arms, curve points, consistency, "
                                           "flexibility) in N parallel processes of cores/N threads each.")] = 1,
    emit_slurm: Annotated[Optional[Path], typer.Option(help="Write the units as a Slurm job array to this folder "
                                                            "(jobs.txt, array.sbatch, finish.sbatch, submit.sh) "
                                                            "instead of running them.")] = None,
    unit: Annotated[Optional[str], typer.Option(hidden=True, help="Run one unit of --experiment-id (a job line).")] = None,
    experiment_id: Annotated[Optional[int], typer.Option(hidden=True, help="The sweep's stored experiment.")] = None,
    finish: Annotated[bool, typer.Option(hidden=True, help="End the sweep --experiment-id: check, report.")] = False,
) -> None:
    """Run every arm of an experiment, compare them, and write the report."""
    from .config.experiment import load_experiment

    exp, db = load_experiment(experiment, set_ or ()), _store(store)
    if emit_slurm is not None or unit is not None or finish or jobs != 1:
        from .sweep import run_sweep

        experiment_id = run_sweep(exp, experiment, db, console, jobs, emit_slurm, unit, experiment_id, finish,
                                  overrides=set_ or ())
        if experiment_id is not None:
            _report(db, experiment_id, exp.output_dir(), open_report, full)
        return
    _run_and_report(exp, db, open_report, full)


def _run_and_report(exp, db, open_report: bool, full: bool = False) -> None:
    from .experiment import run_experiment

    experiment_id = run_experiment(exp, db, console)
    _report(db, experiment_id, exp.output_dir(), open_report, full)


def _report(db, experiment_id: int, outdir: Path, open_report: bool, full: bool = False):
    """Rebuild the comparison from the store, write the report files, print the summary; returns the comparison."""
    from .report import write_report
    from .compare.rebuild import comparison_from_store

    began = time.perf_counter()
    comparison = comparison_from_store(db, experiment_id)
    comparison.phases["report: rebuild from store"] = time.perf_counter() - began
    prices = comparison_prices(db, experiment_id)
    paths = write_report(comparison, prices, outdir)
    rendered = time.perf_counter() - began
    from .terminal import print_comparison

    print_comparison(comparison, prices, console, full)
    console.print(f"\nReport: {paths['html']}  (also {paths['md'].name}, {paths['json'].name}; experiment "
                  f"{experiment_id}; rebuilt and rendered in {rendered:.1f} s)")
    if open_report:
        import webbrowser

        webbrowser.open(paths["html"].resolve().as_uri())
    return comparison


def comparison_prices(db, experiment_id: int):
    from .compare.rebuild import experiment_spec

    return experiment_spec(db, experiment_id).prices


def report(
    experiment_id: Annotated[int, typer.Argument(help="Experiment id printed by `tuneoff run` (see `tuneoff runs`).")],
    output: Annotated[Optional[Path], typer.Option(help="Where to write the report (default: the experiment's output).")] = None,
    store: StoreOpt = None,
    open_report: Annotated[bool, typer.Option("--open", help="Open the HTML report in a browser.")] = False,
    full: FullOpt = False,
    items: Annotated[Optional[Path], typer.Option(
        "--items", help="Also write every test item x arm (raw output, parsed answer, score, flags) to this "
                        ".jsonl or .csv file.")] = None,
) -> None:
    """Re-render an experiment's report from the store (no model is loaded)."""
    from .compare.rebuild import experiment_spec

    db = _store(store)
    comparison = _report(db, experiment_id, output or experiment_spec(db, experiment_id).output_dir(), open_report, full)
    if items is not None:
        from .report.items import item_matrix, write_items

        matrix = item_matrix(comparison.arms)
        console.print(f"Items: {write_items(matrix, items)} ({len(matrix.ids)} test items x {len(matrix.arms)} arms)")



def diff(
    a: Annotated[str, typer.Argument(help="The earlier experiment: an id in the store, or a report.json (or its folder).")],
    b: Annotated[str, typer.Argument(help="The later experiment, the same way.")],
    html: Annotated[Optional[Path], typer.Option("--html", help="Where to write the HTML page (default: "
                                                 "./tuneoff-diff-A-B.html).")] = None,
    store: StoreOpt = None,
    open_report: Annotated[bool, typer.Option("--open", help="Open the HTML page in a browser.")] = False,
) -> None:
    """Compare two experiments: each arm's metric with a paired test, flipped items, changed settings."""
    from .compare.diff import diff_experiments, load_side
    from .report.diff import write_diff
    from .terminal import print_diff

    db = _store(store) if a.isdigit() or b.isdigit() else None
    d = diff_experiments(load_side(a, db), load_side(b, db))
    print_diff(d, console)
    path = write_diff(d, html or Path(f"tuneoff-diff-{_slug(a)}-{_slug(b)}.html"))
    console.print(f"\nDiff page: {path}")
    if open_report:
        import webbrowser

        webbrowser.open(path.resolve().as_uri())


def _slug(ref: str) -> str:
    """An experiment id, or a report file's folder name: a short, safe part of a file name."""
    p = Path(ref)
    name = ref if ref.isdigit() else (p.parent.name if p.name == "report.json" else p.name) or "report"
    return "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in name)[:40]


def demo(
    set_: SetOpt = None,
    store: StoreOpt = None,
    open_report: Annotated[bool, typer.Option("--open", help="Open the HTML report when done.")] = False,
    full: FullOpt = False,
) -> None:
    """The main job: SST-2 prompt arms vs LoRA on the embedded model, with a report (~15 min on 2 cores with bf16, ~1.5x or more without)."""
    from .config.experiment import load_experiment

    path = Path(__file__).resolve().parents[1] / "examples" / "sst2.yaml"
    if not path.is_file():
        raise TuneoffError("the demo experiment is missing", file=str(path),
                           hint="run the demo from a clone of the tuneoff repository (examples/sst2.yaml)")
    _run_and_report(load_experiment(path, set_ or ()), _store(store), open_report, full)


def serve(
    model: Annotated[Optional[str], typer.Argument(help="Model spec to serve: embedded:NAME, a model or adapter dir "
                                                       "(default: the stored arm's model, else the embedded default).")] = None,
    arm: Annotated[Optional[str], typer.Option(help="A prompt-arm YAML (with --task), or an arm name of --experiment.")] = None,
    task: Annotated[Optional[Path], typer.Option(help="Task or experiment YAML the arm draws labels and demos from.")] = None,
    experiment: Annotated[Optional[int], typer.Option(help="Serve an arm of this stored experiment, as it was evaluated.")] = None,
    name: Annotated[Optional[str], typer.Option(help="The model id clients send (default: the arm's name).")] = None,
    host: Annotated[str, typer.Option(help="Address to bind; not loopback opens the model to the network.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    api_key_env: Annotated[Optional[str], typer.Option(help="Env variable with the key clients must send.")] = None,
    max_tokens: Annotated[int, typer.Option(help="Largest max_tokens a request may ask for.")] = 512,
    max_request_bytes: Annotated[int, typer.Option(help="Largest request body.")] = 1_000_000,
    batch_size: Annotated[int, typer.Option(help="Most requests per micro-batch.")] = 32,
    dtype: DtypeOpt = "float32",
    decode: DecodeOpt = "eager",
    gguf: Annotated[Optional[Path], typer.Option(help="The model's GGUF export (tuneoff export): single requests "
                                                      "run on it in llama.cpp, batches in transformers.")] = None,
    store: StoreOpt = None,
) -> None:
    """Serve a model or an arm over an OpenAI-compatible API (/v1/chat/completions, /v1/completions)."""
    from .serve import Limits, ServeOptions, arm_from_files, arm_from_store
    from .serve import serve as run_server

    if experiment is not None:
        if not arm:
            raise TuneoffError("--experiment needs --arm NAME", field="arm")
        served = arm_from_store(_store(store), experiment, arm, name)
        served.model = model or served.model
    else:
        served = arm_from_files(model or DEFAULT_MODEL, Path(arm) if arm else None, task, name)
    options = ServeOptions(host=host, port=port, api_key_env=api_key_env, dtype=dtype, decode=decode,
                           batch_size=batch_size, gguf=gguf,
                           limits=Limits(max_tokens=max_tokens, max_request_bytes=max_request_bytes))
    run_server(served, options, say=lambda text: err_console.print(text, highlight=False))


def export(
    model: Annotated[str, typer.Argument(help="A fine-tune's output (a LoRA adapter is merged on load), or any local model spec.")],
    out: Annotated[Path, typer.Argument(help="The .gguf file to write.")],
    outtype: Annotated[str, typer.Option(help="f32 (exact), f16 or q8_0.")] = "f32",
    check: Annotated[Optional[Path], typer.Option(help="Task or experiment YAML: compare greedy outputs of the GGUF "
                                                       "in llama.cpp with transformers on its test prompts.")] = None,
    arm: Annotated[Optional[str], typer.Option(help="How the check's prompts are written: an arm of the --check "
                                                    "experiment or a prompt-arm YAML (default zero-shot).")] = None,
    n: Annotated[int, typer.Option(help="Test prompts in the check.")] = 20,
    max_tokens: Annotated[int, typer.Option(help="Greedy tokens per prompt in the check.")] = 32,
) -> None:
    """Export a (fine-tuned) Llama-architecture model as GGUF for llama.cpp / Ollama, optionally checking parity."""
    from .finetune.export import export_gguf, parity

    with err_console.status(f"exporting {model} to {out}"):
        result = export_gguf(model, out, outtype)
    console.print(f"{result.path}: {result.tensors} tensors, {result.bytes / 1e6:.1f} MB ({result.outtype})")
    if check is None:
        return
    with err_console.status(f"greedy parity on {n} test prompts (transformers vs llama.cpp)"):
        found = parity(model, result.path, _check_prompts(check, arm, n), max_tokens)
    console.print(f"parity: {found.same_output}/{found.prompts} greedy outputs identical ({found.agreement:.0%}), "
                  f"{found.same_tokens}/{found.prompts} prompts tokenised identically by llama.cpp")
    for pair in [p for p in found.pairs if p["hf"] != p["gguf"]][:3]:
        console.print(f"  differs: {pair['prompt'][:60]!r}\n    hf:   {pair['hf'][:80]!r}\n    gguf: {pair['gguf'][:80]!r}")


def _check_prompts(task: Path, arm: str | None, n: int) -> list[list[dict]]:
    """The first n test items of a task as chats, written by a prompt arm (generate mode)."""
    from .config.experiment import build_prompt_arm, load_task_data
    from .evaluate.runner import load_arm
    from .prompting import PromptArm, TaskContext, prepare

    data = load_task_data(task)
    if arm is None:
        prompt_arm = PromptArm(name="parity")
    else:
        source, exp = _arm_from(task, arm)
        prompt_arm = build_prompt_arm(source, exp.task) if exp else load_arm(source)
    prompter = prepare(prompt_arm.replace(mode="generate"), TaskContext.of(data))
    return [prompter.messages(ex) for ex in data.test[:n]]


COMMANDS: dict[str, Callable] = {
    "demo": demo,
    "run": run,
    "report": report,
    "diff": diff,
    "eval": eval_arm,
    "finetune": finetune,
    "merge": merge,
    "validate": validate,
    "models": models,
    "ask": ask,
    "runs": runs,
    "serve": serve,
    "export": export,
}
"""Command name -> typed function. The one list `tuneoff --help` is built from."""


def _friendly(fn: Callable) -> Callable:
    """User mistakes print as one or two lines and exit 1; our bugs keep their traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except TuneoffError as exc:
            err_console.print(f"[red]error:[/red] {exc.render()}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            err_console.print("interrupted: stored work is kept; rerun the same command to resume")
            raise typer.Exit(130) from None

    return wrapper


LAUNCHABLE = ("finetune",)
"""Commands that run as one of several processes under `accelerate launch` / torchrun (data-parallel
training); every other command would run whole in each process, so it refuses to start there."""


def _one_process(name: str, fn: Callable) -> Callable:
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if "WORLD_SIZE" in os.environ:  # the cheap test first: the parallel module imports torch
            from .finetune.parallel import launched

            if launched():
                raise TuneoffError(f"`tuneoff {name}` runs in one process, but this is one of "
                                   f"{os.environ['WORLD_SIZE']} that accelerate launch / torchrun started: each "
                                   f"would run all of it", field="WORLD_SIZE",
                                   hint="run it without the launcher; for parallel work use `tuneoff run --jobs N` "
                                        "or `tuneoff finetune --num-processes N` (DISTRIBUTED.md)")
        return fn(*args, **kwargs)

    return wrapper


def build_app() -> typer.Typer:
    app = typer.Typer(help="tuneoff: prompt engineering or fine-tuning? Measure both on your own task.",
                      no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
    for name, fn in COMMANDS.items():
        app.command(name)(_friendly(fn if name in LAUNCHABLE else _one_process(name, fn)))
    return app


def main() -> None:
    build_app()(prog_name="tuneoff")


if __name__ == "__main__":
    sys.exit(main())
