"""Where tuneoff keeps its state: the model cache and the default run store."""

from __future__ import annotations

import os
from pathlib import Path


def tuneoff_home() -> Path:
    """`TUNEOFF_HOME`, default `~/.cache/tuneoff`; created on first use."""
    home = Path(os.environ.get("TUNEOFF_HOME") or Path.home() / ".cache" / "tuneoff").expanduser()
    home.mkdir(parents=True, exist_ok=True)
    return home


def default_store_path() -> Path:
    return tuneoff_home() / "runs.sqlite"
