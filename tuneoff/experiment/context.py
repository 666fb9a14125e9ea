"""What one process holds while it does an experiment's units: the experiment, its loaded data and
models, the phases timed so far, and each arm's state (`ArmState`: trained model, chosen options) that
later units read. In a sweep every process starts from the states its unit's needs left in the store.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ..config.experiment import ArmEntry, ArmKind, Experiment
from ..config.task import TaskData
from ..memory import PhasePeaks
from ..models import ModelSpec, load_backend
from ..records import ArmState, Link, Role
from ..store import Store


@dataclass
class RunContext:
    """What one `tuneoff run` (or one unit of a sweep) holds while it works."""

    exp: Experiment
    store: Store
    experiment_id: int
    data: TaskData
    console: object = None
    backends: dict = field(default_factory=dict)
    """model spec -> loaded backend (each model is loaded once per process)."""
    arms: dict[str, ArmState] = field(default_factory=dict)
    """arm name -> what its work so far left: trained model, tuning's choices, a prompt search's choice."""
    phases: dict = field(default_factory=dict)
    links: list[Link] = field(default_factory=list)
    """The runs this process linked to the experiment, in order (a unit's share goes to its `UnitState`)."""
    compiled_seconds: float = 0.0
    """Compile seconds of the compiled decode path in models already released (`release`)."""
    memory: PhasePeaks = field(default_factory=PhasePeaks)
    """Peak resident memory (MB) of each phase (`tuneoff.memory`)."""
    ood: TaskData | None = None
    """The out-of-domain test set (`exp.ood`), loaded and validated before any model call."""

    def state(self, arm: str) -> ArmState:
        """The arm's state, created empty on first use."""
        return self.arms.setdefault(arm, ArmState())

    def model_of(self, arm: str) -> Path | None:
        """The fine-tune arm's trained (or tuning-chosen) model directory, once there is one."""
        found = self.arms.get(arm)
        return Path(found.model) if found is not None and found.model else None

    def chosen(self, arm: str) -> dict:
        """The options a fine-tune arm's search chose ({} when untuned)."""
        found = self.arms.get(arm)
        return dict(found.chosen) if found is not None and found.chosen else {}

    def chosen_prompt(self, arm: str) -> dict | None:
        """What a searched prompt arm keeps for its repeats, curve points and probes: the chosen
        instruction and calibration, with no further search (None: the arm was not searched)."""
        found = self.arms.get(arm)
        return {**found.prompt, "optimise": None} if found is not None and found.prompt else None

    @contextmanager
    def phase(self, name: str):
        began = time.perf_counter()
        self.memory.begin()
        try:
            yield
        finally:
            self.phases[name] = self.phases.get(name, 0.0) + time.perf_counter() - began
            self.memory.end(name)

    def compile_phase(self) -> None:
        """The compiled decode path's first calls per shape (compile included), as a phase of its own:
        those seconds are also inside the evaluations' phases that paid them."""
        seconds = self.compiled_seconds + sum(getattr(b, "compile_seconds", 0.0) for b in self.backends.values())
        if seconds:
            self.phases["decode compile (first call per shape, inside the phases above)"] = seconds

    def backend(self, spec: str):
        if spec not in self.backends:
            with self.phase(f"load {Path(spec).name if '/' in spec else spec}"):
                # a fine-tune is a transformers directory: only the base model can be a GGUF
                engine = self.exp.engine if spec == self.exp.model else "transformers"
                self.backends[spec] = load_backend(ModelSpec(spec, dtype=self.exp.dtype, engine=engine,
                                                             device=self.exp.device, batch_size=self.exp.batch_size,
                                                             decode=self.exp.decode))
        return self.backends[spec]

    def release(self, keep: set[str]) -> None:
        """Drop the loaded models not in `keep` (the ones later units still use): one resident copy of
        each model, held only while its arms need it."""
        import gc

        dropped = [spec for spec in self.backends if spec not in keep]
        for spec in dropped:
            self.compiled_seconds += getattr(self.backends.pop(spec), "compile_seconds", 0.0)
        if dropped:
            gc.collect()  # the model's tensors go now, not at some later collection

    def say(self, text: str) -> None:
        if self.console is not None:
            self.console.print(text)

    def weights_of(self, entry: ArmEntry) -> str:
        """The model that serves an arm: its own training output (fine-tune arm), the fine-tune it
        names (combined arm), else its own or the experiment's model."""
        if entry.kind is ArmKind.FINETUNE:
            return str(self.model_of(entry.name))
        if entry.finetuned:
            return str(self.model_of(entry.finetuned))
        return entry.model or self.exp.model

    def link(self, run_id: int, role: Role, arm: str, x: int | None = None) -> None:
        self.store.link_run(self.experiment_id, run_id, role.value, arm, x)
        self.links.append(Link(run_id, role, arm, x))

    def record_search(self, arm: str, optimised, x: int | None = None) -> None:
        """What a prompt arm's dev search leaves behind: its link, the chosen prompt (a later unit or
        repeat reuses it) and one line on the terminal. Called by the plain and the adaptive path."""
        chosen = optimised.arm
        self.link(optimised.run_id, Role.OPTIMISE, arm, x)
        self.state(arm).prompt = {"instruction": chosen.instruction, "calibration": chosen.calibration}
        self.say(f"{arm}: searched on dev, {len(optimised.trials)} candidates, {optimised.calls_spent} calls in "
                 f"{optimised.seconds:.0f} s; chosen shots={chosen.n_shots}, calibration={chosen.calibration} "
                 f"(dev {optimised.dev_score:.3f})")
