"""`tuneoff serve`: an OpenAI-compatible server for any arm, so the winner of a comparison can be used.

    tuneoff serve embedded:smollm2-135m-instruct                        # the bare model, on 127.0.0.1:8000
    tuneoff serve embedded:smollm2-135m-instruct --arm few-shot.yaml --task task.yaml
    tuneoff serve --experiment 3 --arm lora                              # a stored arm, as it was evaluated

Clients (the `openai` package, curl, tuneoff's own `openai` backend) call `/v1/models`,
`/v1/chat/completions` (streamed or not) and `/v1/completions`. Rooms: `arms` (what is served), `worker`
(the model thread, micro-batching), `app` + `routes` (HTTP, checks, OpenAI's shapes).
"""

from __future__ import annotations

import ipaddress
import os
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import TuneoffError
from .api import Limits
from .app import create_app
from .arms import ServedArm, arm_from_files, arm_from_store

__all__ = ["Limits", "ServedArm", "ServerThread", "arm_from_files", "arm_from_store", "build", "create_app",
           "is_loopback", "serve"]


@dataclass
class ServeOptions:
    """How `tuneoff serve` listens and what it allows."""

    host: str = "127.0.0.1"
    """Address to bind; anything but loopback opens the model to the network (a warning is printed)."""
    port: int = 8000
    api_key_env: str | None = None
    """Environment variable holding the key clients must send (`Authorization: Bearer KEY`); none: no key."""
    limits: Limits = Limits()
    dtype: str = "float32"
    decode: str = "eager"
    """`eager` or `compiled` (static KV cache + compiled decode step: `tuneoff.models.decode`)."""
    batch_size: int = 32
    """Most requests in one micro-batch."""
    gguf: Path | None = None
    """A GGUF export of the served model (`tuneoff export`): single requests run on it in llama.cpp,
    micro-batches stay in transformers."""
    window_ms: float = 10.0
    """How long the first request of a batch waits for company."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def build(arm: ServedArm, options: ServeOptions):
    """(app, backend) for an arm: its model loaded, the worker started."""
    from ..models import ModelSpec, load_backend
    from ..models.local import TransformersBackend
    from .worker import Worker

    spec = ModelSpec(arm.model, dtype=options.dtype, engine="transformers", batch_size=options.batch_size,
                     decode=options.decode)
    if spec.kind != "local":
        raise TuneoffError(f"arm '{arm.name}' runs on '{arm.model}', a model served elsewhere: tuneoff serve "
                           "serves local weights", field="model",
                           hint="name a local MODEL to serve the arm's prompting around it (e.g. embedded:NAME)")
    backend = load_backend(spec)
    if not isinstance(backend, TransformersBackend):
        raise TuneoffError(f"'{arm.model}' is not a local transformers model", field="model")
    if options.gguf is not None:
        from ..models.llamacpp import attach_gguf

        attach_gguf(backend, options.gguf)
    api_key = None
    if options.api_key_env:
        api_key = os.environ.get(options.api_key_env)
        if not api_key:
            raise TuneoffError(f"environment variable {options.api_key_env} is empty", field="api_key_env")
    end_of_turn = arm.prompter.arm.score_end_of_turn if arm.prompter else True
    worker = Worker(backend, arm.labels, end_of_turn, window_s=options.window_ms / 1000, max_batch=options.batch_size)
    return create_app(backend, arm, options.limits, api_key, worker), backend


def serve(arm: ServedArm, options: ServeOptions, say=print) -> None:
    """Load the arm's model and serve it until interrupted."""
    import uvicorn

    if not is_loopback(options.host):
        say(f"warning: binding {options.host} opens '{arm.name}' to the network"
            + ("" if options.api_key_env else " without an API key (--api-key-env)"))
    app, backend = build(arm, options)
    engines = "single requests on llama.cpp, batches on transformers" if backend.generator is not None else \
        "transformers"
    say(f"serving '{arm.name}' ({arm.model}; {engines}) on http://{options.host}:{options.port}/v1")
    uvicorn.run(app, host=options.host, port=options.port, log_level="warning")


class ServerThread:
    """A uvicorn server for an app in a background thread, on a free loopback port (tests, benchmarks)."""

    def __init__(self, app, host: str = "127.0.0.1", port: int | None = None):
        import uvicorn

        self.host, self.port = host, port or free_port(host)
        self.server = uvicorn.Server(uvicorn.Config(app, host=self.host, port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.time() + 30
        while not self.server.started:
            if time.time() > deadline or not self.thread.is_alive():
                raise RuntimeError("the server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]
