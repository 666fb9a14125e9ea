"""Resumable checkpoints, written so a crash at any moment leaves either a whole checkpoint or none.

Layout: `<output>/checkpoints/step-000040/` holding the trainable parameters (safetensors), the
optimizer and scheduler state, the RNG states (`rng.pt`; `rng-N.pt` for process N > 0 of a
data-parallel run) and `state.json` (step, data position, counters).
A checkpoint is written into `.tmp-step-000040`, renamed, and only then gets its `COMPLETE` marker:
a directory without the marker (a crash between rename and marker) or any `.tmp-*` leftover is
ignored on resume and cleaned up. Old checkpoints lose their marker before they are deleted, for
the same reason.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

MARKER = "COMPLETE"
PREFIX = "step-"


@dataclass
class TrainState:
    """Where training stands: everything besides tensors that a resume needs."""

    step: int = 0
    """Optimizer steps done."""
    epoch: int = 0
    """Current epoch (0-based)."""
    batch_in_epoch: int = 0
    """Micro-batches of the current epoch already consumed."""
    tokens: int = 0
    """Non-padding tokens seen."""
    label_tokens: int = 0
    """Tokens that carried loss."""
    padded_tokens: int = 0
    """Tokens processed including padding (the compute actually spent)."""
    seconds: float = 0.0
    """Training wall time, summed over sessions."""
    last_loss: float | None = None
    best_eval: float | None = None
    best_step: int | None = None
    bad_evals: int = 0
    """Evals in a row without a better dev loss (early stopping)."""
    stopped_early: bool = False
    best_metric: float | None = None
    """Best dev main metric at an epoch end (when a scorer is given; higher is better)."""
    dev_metrics: list = field(default_factory=list)
    """(epoch, step, dev metric) at each epoch end: the tuning record of this run."""
    losses: list = field(default_factory=list)
    """(step, loss) per optimizer step: the loss curve, also kept in the store."""


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_bytes_synced(path: Path, writer) -> None:
    with open(path, "wb") as f:
        writer(f)
        f.flush()
        os.fsync(f.fileno())


def trainable_tensors(model) -> dict:
    """The parameters that train, by name: all a checkpoint needs, the rest is the base model."""
    return {n: p.detach().contiguous().cpu() for n, p in model.named_parameters() if p.requires_grad}


def checkpoint_path(root: Path, step: int) -> Path:
    return root / f"{PREFIX}{step:06d}"


def save_checkpoint(root: Path, model, optimizer, scheduler, state: TrainState, keep: int,
                    rng: list[dict] | None = None) -> Path:
    """Write one checkpoint atomically, then prune to the last `keep`. `rng`: every training process's
    RNG state, by rank (default: this process's alone)."""
    from safetensors.torch import save_file

    root.mkdir(parents=True, exist_ok=True)
    final = checkpoint_path(root, state.step)
    tmp = root / f".tmp-{final.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_file(trainable_tensors(model), str(tmp / "trainable.safetensors"))
    _write_bytes_synced(tmp / "optimizer.pt", lambda f: torch.save(
        {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}, f))
    for rank, rng_state_of_rank in enumerate(rng or [rng_state()]):
        _write_bytes_synced(tmp / _rng_file(rank), lambda f, r=rng_state_of_rank: torch.save(r, f))
    (tmp / "state.json").write_text(json.dumps(asdict(state)))
    _fsync_dir(tmp)
    if final.exists():  # a markerless leftover of an earlier crash at this very step
        shutil.rmtree(final)
    os.rename(tmp, final)
    _write_bytes_synced(final / MARKER, lambda f: f.write(b"ok\n"))
    _fsync_dir(root)
    prune(root, keep)
    return final


def complete_checkpoints(root: Path) -> list[Path]:
    """Finished checkpoints, oldest first."""
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.name.startswith(PREFIX) and (p / MARKER).exists()]
    return sorted(found, key=lambda p: int(p.name[len(PREFIX):]))


def clean_incomplete(root: Path) -> list[Path]:
    """Remove `.tmp-*` leftovers and checkpoints without a marker; returns what was removed."""
    if not root.is_dir():
        return []
    gone = [p for p in root.iterdir() if p.is_dir() and (p.name.startswith(".tmp-") or not (p / MARKER).exists())]
    for p in gone:
        shutil.rmtree(p, ignore_errors=True)
    return gone


def prune(root: Path, keep: int) -> None:
    for old in complete_checkpoints(root)[:-keep]:
        (old / MARKER).unlink()  # first un-complete it: a crash mid-delete leaves an ignored dir
        shutil.rmtree(old, ignore_errors=True)


def load_checkpoint(path: Path, model, optimizer, scheduler, rank: int = 0) -> TrainState:
    """Restore parameters, optimizer, scheduler and RNG (process `rank`'s, where the checkpoint has it;
    else the main process's) from a complete checkpoint."""
    from safetensors.torch import load_file

    tensors = load_file(str(path / "trainable.safetensors"))
    params = dict(model.named_parameters())
    missing = [n for n, p in params.items() if p.requires_grad and n not in tensors]
    if missing or set(tensors) - set(params):
        raise RuntimeError(f"checkpoint {path} does not match the model being trained "
                           f"(missing {missing[:3]}, unexpected {sorted(set(tensors) - set(params))[:3]})")
    with torch.no_grad():
        for name, value in tensors.items():
            params[name].copy_(value)
    blob = torch.load(path / "optimizer.pt", map_location="cpu", weights_only=True)
    optimizer.load_state_dict(blob["optimizer"])
    scheduler.load_state_dict(blob["scheduler"])
    own = path / _rng_file(rank)
    _set_rng_state(torch.load(own if own.exists() else path / _rng_file(0), map_location="cpu", weights_only=True))
    return TrainState(**json.loads((path / "state.json").read_text()))


def has_rng_of(path: Path, rank: int) -> bool:
    """Whether a checkpoint holds process `rank`'s own RNG state (one written by as many processes)."""
    return (path / _rng_file(rank)).exists()


def _rng_file(rank: int) -> str:
    return f"rng-{rank}.pt" if rank else "rng.pt"


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    # dropout (LoRA's included) draws from these: restoring them makes a resumed step identical
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_best(root: Path, model) -> None:
    """The trainable weights at the best dev loss so far (early stopping returns to them)."""
    from safetensors.torch import save_file

    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".tmp-best-{os.getpid()}.safetensors"
    save_file(trainable_tensors(model), str(tmp))
    os.replace(tmp, root / "best.safetensors")


def load_best(root: Path, model) -> bool:
    from safetensors.torch import load_file

    path = root / "best.safetensors"
    if not path.exists():
        return False
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in load_file(str(path)).items():
            params[name].copy_(value)
    return True
