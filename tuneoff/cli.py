"""The command table: each command is a typed function that calls one library function.

`COMMANDS` is the single source of truth; `main()` registers it with typer, and a test checks the
table against `tuneoff --help`. A `TuneoffError` prints as one or two lines and exits 1.
"""

from __future__ import annotations

import functools
import sys
import time
from pathlib import Path
from typing import Annotated, Callable, Optional

import typer
from rich.console import Console
from rich.table import Table

from .errors import TuneoffError

console = Console()
err_console = Console(stderr=True)

StoreOpt = Annotated[Optional[Path], typer.Option("--store", help="Run store (SQLite); default TUNEOFF_HOME/runs.sqlite.")]
ModelOpt = Annotated[str, typer.Option("--model", "-m", help="Model spec: embedded:NAME, a model/adapter dir, or a .gguf.")]
DtypeOpt = Annotated[str, typer.Option("--dtype", help="float32, bfloat16, or auto (bf16 where the CPU/GPU has it).")]
DEFAULT_MODEL = "embedded:smollm2-135m-instruct"


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
    store: StoreOpt = None,
) -> None:
    """Ask one prompt to a model; the call is kept in the run store."""
    from .ask import ask as run_ask
    from .models import GenerationConfig, ModelSpec, load_backend

    spec = ModelSpec(model, dtype=dtype)
    db = _store(store)
    with err_console.status(f"loading {model} (a first load dequantises the GGUF: ~20 s)"):
        backend = load_backend(spec)
    config = GenerationConfig(max_new_tokens=max_tokens, temperature=temperature, seed=seed)
    with err_console.status("generating"):
        result = run_ask(prompt, spec, db, system=system, demos_file=demos, config=config, backend=backend)
    c = result.completion
    console.print(c.text)
    err_console.print(f"[dim]run {result.run_id}: {c.tokens_in} tokens in, {c.tokens_out} out, {c.seconds:.2f} s, "
                      f"stored in {db.path}[/dim]")


def runs(
    limit: Annotated[int, typer.Option(help="How many of the latest runs to show.")] = 30,
    store: StoreOpt = None,
) -> None:
    """List stored runs, newest first."""
    db = _store(store)
    table = Table(title=f"Runs in {db.path}")
    for col in ("id", "kind", "arm", "task", "split", "model", "status", "started", "seconds", "main metric"):
        table.add_column(col)
    for r in db.runs(limit):
        seconds = f"{r['finished_at'] - r['started_at']:.1f}" if r["finished_at"] else ""
        main = db.db.execute("SELECT name, value FROM metrics WHERE run_id=? AND ci_low IS NOT NULL LIMIT 1",
                             (r["id"],)).fetchone()
        table.add_row(str(r["id"]), r["kind"], r["arm"], r["task"], r["split"], r["model"], r["status"],
                      time.strftime("%Y-%m-%d %H:%M", time.localtime(r["started_at"])), seconds,
                      f"{main['name']}={main['value']:.3f}" if main else "")
    console.print(table)


COMMANDS: dict[str, Callable] = {
    "models": models,
    "ask": ask,
    "runs": runs,
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


def build_app() -> typer.Typer:
    app = typer.Typer(help="tuneoff: prompt engineering or fine-tuning? Measure both on your own task.",
                      no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
    for name, fn in COMMANDS.items():
        app.command(name)(_friendly(fn))
    return app


def main() -> None:
    build_app()(prog_name="tuneoff")


if __name__ == "__main__":
    sys.exit(main())
