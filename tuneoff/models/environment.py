"""Where an experiment ran: package versions and the machine, recorded with its summary so a report
rendered later (or on another machine) still says what produced its numbers."""

from __future__ import annotations

import platform
from importlib import metadata


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def run_environment() -> dict[str, str | None]:
    """{"tuneoff", "torch", "transformers", "python", "cpu", "gpu"}: versions and device names."""
    from .cpu import cpu_features

    gpu = None
    try:
        import torch

        if torch.cuda.is_available():
            gpu = ", ".join(sorted({torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())}))
    except ImportError:  # a store written by a torch-free process: no GPU to name
        pass
    return {"tuneoff": _version("tuneoff"), "torch": _version("torch"), "transformers": _version("transformers"),
            "python": platform.python_version(), "cpu": cpu_features().model or platform.processor() or None,
            "gpu": gpu}
