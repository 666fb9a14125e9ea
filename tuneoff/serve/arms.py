"""What `tuneoff serve` serves: a model, and optionally a prompt arm wrapped around the user's messages.

An arm comes from the store (an experiment's arm, on the model it was evaluated with: the base model,
a fine-tuned directory or base + adapter) or from files (a model spec, a prompt-arm YAML, and the task
whose labels and training examples the arm draws on). Serving applies the arm exactly as the evaluation
did: its persona, instruction and demos (similarity-selected ones chosen per request) around the
user's last message, the earlier messages as the item's context; a score-mode arm answers with the
likeliest label, a chain-of-thought arm with the answer extracted from its reasoning.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..config.experiment import Experiment, build_prompt_arm
from ..config.specs import from_dict
from ..config.task import load_task
from ..data import Example
from ..errors import TuneoffError, did_you_mean
from ..prompting import TaskContext, prepare
from ..prompting.answers import parse_reply
from ..prompting.arm import PromptArm
from ..prompting.strategies import Prompter
from ..records import ExperimentRuns, Role
from ..store import Store


class RequestError(ValueError):
    """A request the arm cannot take (e.g. no user message to answer): a 400 for the client."""

    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.param = param


@dataclass
class ServedArm:
    """A model name as clients see it, the model spec behind it, and the prompting around requests."""

    name: str
    """The id `/v1/models` lists and requests name."""
    model: str
    """Model spec loaded for it (`embedded:NAME`, a directory, an adapter directory)."""
    prompter: Prompter | None = None
    """None: the user's messages go to the model as they are."""

    @property
    def mode(self) -> str:
        return self.prompter.arm.mode if self.prompter else "generate"

    @property
    def labels(self) -> list[str]:
        return list(self.prompter.ctx.labels or ()) if self.prompter else []

    def messages(self, messages: list[dict]) -> list[dict]:
        """The chat the model sees for a request's messages."""
        if self.prompter is None:
            return messages
        if messages[-1]["role"] != "user":
            raise RequestError("the last message must be the user's: the arm answers it", "messages")
        item = Example(input=messages[-1]["content"], target="", context=tuple(messages[:-1]))
        return self.prompter.messages(item)

    def answer(self, text: str) -> str:
        """The reply a client gets: a chain-of-thought arm's extracted answer, else the text as generated."""
        if self.prompter is None or not self.prompter.arm.chain_of_thought:
            return text
        ctx = self.prompter.ctx
        parsed = parse_reply(text, labels=ctx.labels, metric=ctx.metric, extractor=self.prompter.arm.extractor,
                             cot=True)
        return text if parsed.prediction is None else str(parsed.prediction)

    def default_max_tokens(self) -> int:
        return self.prompter.arm.new_tokens if self.prompter else 256

    def default_temperature(self) -> float:
        return self.prompter.arm.temperature if self.prompter else 0.0


def arm_from_files(model: str, arm: str | Path | None, task: str | Path | None, name: str | None = None) -> ServedArm:
    """A model, optionally with a prompt-arm YAML and the task (YAML) it draws labels and demos from."""
    from ..config.experiment import load_task_data
    from ..evaluate.runner import load_arm

    if arm is None:
        return ServedArm(name or _default_name(model), model)
    prompt_arm = load_arm(Path(arm))
    if task is None and (prompt_arm.n_shots and prompt_arm.demos is None or prompt_arm.mode == "score"):
        raise TuneoffError(f"arm '{prompt_arm.name}' needs its task (demos or labels)", field="task",
                           hint="pass --task TASK.yaml (or an experiment YAML)")
    ctx = TaskContext.of(load_task_data(task)) if task is not None else TaskContext(name="served")
    return ServedArm(name or prompt_arm.name, model, prepare(prompt_arm, ctx))


def arm_from_store(store: Store, experiment_id: int, arm: str, name: str | None = None) -> ServedArm:
    """An experiment's arm as it was evaluated: its (optimised) prompt arm on the model its run used."""
    row = store.experiment(experiment_id)  # a missing id is a TuneoffError there
    spec = json.loads(row["spec_json"])
    exp = from_dict(Experiment, spec, "", f"experiment {experiment_id}")
    runs = ExperimentRuns.read(store, experiment_id)
    if runs.last(Role.ARM, arm) is None:
        raise TuneoffError(f"experiment {experiment_id} has no evaluated arm '{arm}'", field="arm",
                           hint=did_you_mean(arm, sorted(runs.arms(Role.ARM))))
    run = store.run(runs.last(Role.ARM, arm))
    prompt_arm = from_dict(PromptArm, json.loads(run["spec_json"]), "arm") if run["spec_json"] else \
        build_prompt_arm(exp.arm(arm), exp.task)
    ctx = TaskContext.of(load_task(exp.task))
    return ServedArm(name or arm, run["model"], prepare(prompt_arm, ctx))


def _default_name(model: str) -> str:
    return model.split(":", 1)[1] if model.startswith("embedded:") else Path(model).name or model
