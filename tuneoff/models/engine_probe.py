"""Whether the attached llama.cpp build can generate on this machine, found out in a child process.

Why a child: some llama.cpp builds die in native code at the first generation, taking Python with them
(a segmentation fault, exit 139): a native build on a virtualised Sapphire Rapids Xeon crashes in its
AMX matmul (ggml-org/llama.cpp#20824; loading works, the first token does not). A crash in a child
costs a second; in tuneoff's own process it would cost `ask`, `serve` and every `engine: auto` run.
So before the first llama.cpp generation in a process, a child loads the GGUF and generates a few
tokens; the verdict is cached in TUNEOFF_HOME per llama.cpp build and CPU, so each machine pays once.
A failed probe falls back to transformers with one line saying why and how to reinstall.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ..home import tuneoff_home
from . import cpu

NO_AMX_INSTALL = ("CMAKE_ARGS='-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON "
                  "-DGGML_AVX512=ON -DGGML_AVX512_VNNI=ON -DGGML_AVX512_BF16=ON' "
                  "pip install --force-reinstall --no-cache-dir llama-cpp-python")
"""The build that avoids llama.cpp's AMX kernels (measured on the AMX Xeon of issue 27: it works there)."""

PROBE_CODE = """
import sys
from llama_cpp import Llama
llm = Llama(model_path=sys.argv[1], n_ctx=64, n_threads=1, n_threads_batch=1, verbose=False)
out = llm.create_completion(prompt="The capital of France is", max_tokens=4, temperature=0.0)
print("ok", repr(out["choices"][0]["text"]))
"""
"""What the child runs: load the GGUF, generate 4 tokens greedily. Replaced by tests to play a crash."""

TIMEOUT_S = 180.0
"""A probe still running after this long (a very busy machine) is given up for this process, not cached."""

CACHE_FILE = "llamacpp-probe.json"


@dataclass(frozen=True)
class Verdict:
    ok: bool
    why: str
    """`ok`, or what happened: a signal, an exit status with the last line of its output, a timeout."""
    cached: bool = False


def build_key() -> str:
    """The llama.cpp build and CPU a verdict holds for: llama-cpp-python's version and install location
    (a reinstall with other CMAKE_ARGS changes its files' times) and the CPU's model and flags."""
    import importlib.metadata
    import importlib.util

    spec = importlib.util.find_spec("llama_cpp")
    where = Path(spec.origin).parent if spec and spec.origin else Path("?")
    libs = sorted(where.glob("**/*.so*")) + sorted(where.glob("**/*.dylib")) + sorted(where.glob("**/*.dll"))
    stamp = ",".join(f"{p.name}:{int(p.stat().st_mtime)}" for p in libs)
    try:
        version = importlib.metadata.version("llama_cpp_python")
    except importlib.metadata.PackageNotFoundError:
        version = "?"
    features = cpu.cpu_features()
    text = f"{version}|{where}|{stamp}|{features.model}|{' '.join(sorted(features.flags))}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def probe(gguf: Path, say=None) -> Verdict:
    """The cached verdict for this build and CPU, or a fresh one from a child process (then cached).
    `say` gets the one line printed when llama.cpp is not usable (default: stderr)."""
    say = say or (lambda line: print(line, file=sys.stderr))
    path, key = tuneoff_home() / CACHE_FILE, build_key()
    cache = _read(path)
    if key in cache:
        verdict = Verdict(cache[key]["ok"], cache[key]["why"], cached=True)
    else:
        verdict = run_child(gguf)
        if not verdict.why.startswith("timed out"):
            cache[key] = {"ok": verdict.ok, "why": verdict.why, "at": time.strftime("%Y-%m-%dT%H:%M:%S")}
            _write(path, cache)
    if not verdict.ok:
        say(f"llama.cpp is not usable on this machine ({verdict.why}{', cached in ' + str(path) if verdict.cached else ''}); "
            f"generating with transformers. A build without AMX kernels avoids the known crash: {NO_AMX_INSTALL}")
    return verdict


def run_child(gguf: Path, timeout_s: float | None = None) -> Verdict:
    """Run PROBE_CODE on `gguf` in a child Python; ok when it exits 0 and says so."""
    try:
        done = subprocess.run([sys.executable, "-c", PROBE_CODE, str(gguf)], capture_output=True, text=True,
                              timeout=timeout_s or TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return Verdict(False, f"timed out after {timeout_s or TIMEOUT_S:.0f} s in a test generation")
    if done.returncode == 0 and done.stdout.startswith("ok"):
        return Verdict(True, "ok")
    if done.returncode < 0:
        try:
            name = signal.Signals(-done.returncode).name
        except ValueError:
            name = f"signal {-done.returncode}"
        return Verdict(False, f"a test generation died of {name}")
    last = (done.stderr.strip().splitlines() or done.stdout.strip().splitlines() or ["no output"])[-1]
    return Verdict(False, f"a test generation exited {done.returncode}: {last[:200]}")


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _write(path: Path, cache: dict) -> None:
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(cache, indent=1))
    tmp.replace(path)  # atomic: two processes probing at once each leave a whole file
