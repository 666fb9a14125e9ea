"""Evaluating arms: run an arm over a split with batched calls, the call cache and resume.

    engine.py    evaluate(): chunks, cache look-ups, store writes, resume; EvalResult
    scoring.py   constrained label scoring (shared-prefix log-likelihoods)
    summary.py   a run's metrics, computed from the store
    runner.py    run_eval(): the typed entry point `tuneoff eval` calls, with its rich table
"""

from .engine import EvalResult, evaluate, model_id, run_fingerprint
from .runner import run_eval

__all__ = ["EvalResult", "evaluate", "model_id", "run_eval", "run_fingerprint"]
