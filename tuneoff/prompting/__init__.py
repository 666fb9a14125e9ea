"""Prompt-engineering arms: strategies, templates, demo selection, answer reading.

    arm.py         PromptArm / OptimiseSpec / TaskContext: an arm and its task, as data
    templates.py   sandboxed, strict Jinja2 templates whose errors name the arm field
    strategies.py  ZeroShot, FewShot, ChainOfThought, Role: (example, demos) -> messages; `prepare`
    demos.py       first / random / stratified / similar demo selection (MiniLM or TF-IDF)
    answers.py     extractors ("The answer is X", "Answer: X", "#### X"), label and number reading

Searching for a better arm needs evaluations, so the optimiser lives with them: `tuneoff.evaluate.optimise`.
"""

from .answers import EXTRACTORS, Parsed, extract_answer, match_label, parse_reply
from .arm import OptimiseSpec, PromptArm, TaskContext
from .strategies import ChainOfThought, FewShot, Prompter, Role, ZeroShot, build_strategy, prepare

__all__ = ["EXTRACTORS", "ChainOfThought", "FewShot", "OptimiseSpec", "Parsed", "PromptArm",
           "Prompter", "Role", "TaskContext", "ZeroShot", "build_strategy", "extract_answer", "match_label",
           "parse_reply", "prepare"]

