"""Evaluating arms: run an arm over a split with batched calls, the call cache and resume.

    engine.py    evaluate(): chunks, cache look-ups, store writes, resume; EvalResult; evaluation(): a run
                 scored in pieces (adaptive evaluation)
    scoring.py   constrained label scoring (shared-prefix log-likelihoods)
    summary.py   a run's metrics, computed from the store
    runner.py    run_eval(): the typed entry point `tuneoff eval` calls, with its rich table
    optimise.py  instruction + bootstrapped-demo search on dev, within a call budget
    consistency.py  the same arm under instruction paraphrases and sampling seeds
    probe.py     the serving probe: an arm's requests timed alone and micro-batched (latency, throughput)
"""

from .engine import EvalResult, evaluate, model_id, run_fingerprint
from .optimise import OptimiseResult, optimise
from .runner import run_eval

__all__ = ["EvalResult", "OptimiseResult", "evaluate", "model_id", "optimise", "run_eval", "run_fingerprint"]
