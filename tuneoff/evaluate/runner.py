"""`run_eval`: the typed entry point behind `tuneoff eval`, and the table it prints."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from ..config.experiment import load_task_data
from ..models.options import DEFAULT_MODEL
from ..prompting.arm import PromptArm, TaskContext
from ..store import Store
from .engine import EvalResult, evaluate
from .optimise import OptimiseResult, optimise

if TYPE_CHECKING:
    from rich.console import Console

    from ..models.base import Backend
    from ..config.task import TaskData, TaskSpec


def load_arm(arm: PromptArm | dict | str | Path) -> PromptArm:
    """A PromptArm from itself, a dict of its fields, or a YAML file of them."""
    from ..config.specs import from_dict, load_spec

    if isinstance(arm, PromptArm):
        return arm
    if isinstance(arm, dict):
        return from_dict(PromptArm, arm, "arm")
    path = Path(arm)
    return load_spec(PromptArm, path)


def run_eval(task: TaskData | TaskSpec | str | Path, arm: PromptArm | dict | str | Path, *,
             model: str | Backend = DEFAULT_MODEL, split: str = "test", store: Store | None = None,
             console: Console | None = None) -> EvalResult:
    """Evaluate one prompt arm on one split of a task and print its numbers.

    task: loaded TaskData, a TaskSpec, or a task/experiment YAML file.
    arm: a PromptArm, a dict of its fields, or a YAML file of them; with `optimise`, the arm is
        first optimised on the task's dev split and the chosen arm is evaluated.
    model: a model spec (`embedded:NAME`, a directory, a .gguf) or an already loaded backend.
    split: train, dev or test.
    store: the run store (default: TUNEOFF_HOME/runs.sqlite).
    console: where the progress bar and the table go (default: a new rich Console).
    """
    from rich.console import Console

    console = console or Console()
    data = load_task_data(task)
    the_arm = load_arm(arm)
    store = store if store is not None else Store()
    backend = _backend(model, console)
    if the_arm.optimise is not None and split == "dev":
        console.print("[yellow]note: optimising and reporting on dev: the number is optimistic[/yellow]")
    status = {"optimise": f"optimising {the_arm.name} on dev"
                          + (f" (budget {the_arm.optimise.budget} calls)" if the_arm.optimise else "")}
    result, optimised = optimise_then_evaluate(
        backend, the_arm, data, split, store=store, console=console,
        step=lambda what: console.status(status[what]) if what in status else nullcontext())
    console.print(result_table(result, optimised))
    return result


def optimise_then_evaluate(backend: Backend, arm: PromptArm, data: TaskData, split: str, *, store: Store,
                           console: Console | None = None, experiment_id: int | None = None,
                           step: Callable[[str], AbstractContextManager] | None = None
                           ) -> tuple[EvalResult, OptimiseResult | None]:
    """Evaluate `arm` on a split; an arm with `optimise` is first optimised on dev (train gives the
    demos) and the arm the optimiser chose is the one evaluated. The one path `tuneoff eval` and
    `tuneoff run` share.

    step: wraps each part ("optimise", "evaluate"), e.g. to time it or show a status line.
    """
    step = step or (lambda what: nullcontext())
    optimised = None
    if arm.optimise is not None:
        with step("optimise"):
            optimised = optimise(backend, arm, data.train, data.dev, data, store=store)
        arm = optimised.arm
    with step("evaluate"):
        result = evaluate(backend, arm, data.split(split), TaskContext.of(data), store=store, split=split,
                          console=console, experiment_id=experiment_id)
    return result, optimised


def _backend(model, console):
    if not isinstance(model, str):
        return model
    from ..models import load_backend

    with console.status(f"loading {model}"):
        return load_backend(model)


def result_table(result: EvalResult, optimised=None):
    """The numbers of one evaluation as a rich table."""
    from rich.table import Table

    m = result.metrics
    main = result.main
    table = Table(title=f"{result.arm.name} on {result.split} (run {result.run_id})", show_header=False)
    table.add_column("what")
    table.add_column("value")
    n = int(m["n_items"].value)
    table.add_row(main.name, f"{main.value:.4f}  95% CI [{main.ci_low:.4f}, {main.ci_high:.4f}]  n={n}")
    if "macro_f1" in m:
        table.add_row("macro-F1", f"{m['macro_f1'].value:.4f}")
    table.add_row("format violations", f"{m['format_violation_rate'].value:.1%}")
    if "hallucinated_label_rate" in m:
        table.add_row("hallucinated labels", f"{m['hallucinated_label_rate'].value:.1%}")
    if "tokens_in_mean" in m:
        table.add_row("tokens / request", f"{m['tokens_in_mean'].value:.1f} in, {m['tokens_out_mean'].value:.1f} out")
        table.add_row("latency / request", f"p50 {m['latency_p50'].value:.3f} s, p95 {m['latency_p95'].value:.3f} s"
                                           f" ({m['seconds_per_item'].value:.3f} s/item amortised)")
    table.add_row("cache", f"{result.cache_hits} hits, {result.cache_misses} misses"
                           + (f" ({result.resumed} resumed)" if result.resumed else ""))
    table.add_row("wall time", f"{m['wall_seconds'].value:.1f} s")
    if optimised is not None:
        table.add_row("optimiser", f"dev {optimised.dev_score:.4f}, {optimised.calls_spent}/{optimised.budget} calls, "
                                   f"{len(optimised.trials)} candidates, {optimised.seconds:.0f} s")
    return table
