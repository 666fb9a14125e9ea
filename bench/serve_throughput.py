# python bench/serve_throughput.py [--requests 8] [--max-tokens 32] [--levels 1,8,32] [--threads 2] [--dtype auto]
"""Serving throughput and latency: `tuneoff serve` against llama.cpp's server, same prompts, same machine.

Each server runs alone as a subprocess on 127.0.0.1 (one after the other: they share the 2 cores); this
process is the load: at each concurrency level it keeps that many chat-completion requests in flight
(greedy, `max_tokens` tokens, SST-2 reviews as prompts) until `requests x level` (at least 16) have
finished, after a warm-up. Bounded: a fixed request count per level, a timeout per request, and every
server is stopped at the end.

tuneoff serve: the embedded SmolLM2-135M-Instruct in transformers bf16 (`dtype auto`), micro-batched.
llama.cpp: llama-cpp-python's server (`pip install 'llama-cpp-python[server]'`) on the GGUF that model
ships as (Q4_1), which serves one request at a time. Both on `--threads` compute threads.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from common import machine, sst2_items  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MODEL = "embedded:smollm2-135m-instruct"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


DTYPE = "auto"
"""tuneoff serve's --dtype (set from this script's --dtype: float32 plays a CPU without bf16)."""


def start(kind: str, port: int, threads: int) -> tuple[subprocess.Popen, str]:
    """(process, model name) of a server listening on 127.0.0.1:port, computing on `threads` threads."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(threads)}
    if kind == "tuneoff":
        cmd = [sys.executable, "-c", "from tuneoff.cli import main; main()", "serve", "--port", str(port),
               "--dtype", DTYPE, "--name", "smollm2"]
    else:
        from tuneoff.models.llamacpp import gguf_of

        cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf_of(MODEL)), "--model_alias", "smollm2",
               "--host", "127.0.0.1", "--port", str(port), "--n_threads", str(threads), "--n_threads_batch",
               str(threads), "--n_ctx", "2048"]
    # the server's log goes to a file: an unread pipe fills up with llama.cpp's load log and blocks it
    log = tempfile.NamedTemporaryFile(prefix=f"serve-bench-{kind}-", suffix=".log", delete=False)
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 180
    while time.time() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=2).status_code == 200:
                return proc, "smollm2"
        except httpx.HTTPError:
            time.sleep(0.5)
        if proc.poll() is not None:
            raise RuntimeError(f"{kind} server exited: {Path(log.name).read_text()[-2000:]}")
    proc.terminate()
    raise RuntimeError(f"{kind} server did not start in 180 s")


async def load(url: str, model: str, prompts: list[str], concurrency: int, total: int, max_tokens: int) -> dict:
    """Keep `concurrency` requests in flight until `total` have finished; latencies and wall time."""
    latencies, tokens, queue = [], [], list(range(total))

    async def one(client: httpx.AsyncClient) -> None:
        while queue:
            i = queue.pop()
            began = time.perf_counter()
            r = await client.post(url, json={"model": model, "max_tokens": max_tokens, "temperature": 0,
                                             "messages": [{"role": "user", "content": prompts[i % len(prompts)]}]})
            r.raise_for_status()
            latencies.append(time.perf_counter() - began)
            tokens.append(r.json()["usage"]["completion_tokens"])

    async with httpx.AsyncClient(timeout=300, limits=httpx.Limits(max_connections=concurrency)) as client:
        began = time.perf_counter()
        await asyncio.gather(*(one(client) for _ in range(concurrency)))
        wall = time.perf_counter() - began
    q = statistics.quantiles(latencies, n=20) if len(latencies) > 1 else latencies * 19
    return {"rps": total / wall, "p50": statistics.median(latencies), "p95": q[18], "tok_s": sum(tokens) / wall,
            "n": total}


def measure(kind: str, prompts: list[str], levels: list[int], per_level: int, max_tokens: int,
            threads: int) -> dict[int, dict]:
    port = free_port()
    proc, model = start(kind, port, threads)
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    try:
        asyncio.run(load(url, model, prompts, 2, 4, max_tokens))  # warm-up
        out = {}
        for c in levels:
            out[c] = asyncio.run(load(url, model, prompts, c, max(per_level, per_level * c // 8), max_tokens))
            r = out[c]
            print(f"  {kind:8s} c={c:<3d} {r['n']:3d} requests  {r['rps']:6.2f} req/s  p50 {r['p50']:6.2f} s  "
                  f"p95 {r['p95']:6.2f} s  {r['tok_s']:6.1f} tok/s", flush=True)
        return out
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=8,
                        help="requests at concurrency <= 8; more at higher levels (c x requests / 8)")
    parser.add_argument("--threads", type=int, default=2,
                        help="compute threads per server (1 on a CPU other jobs share: OpenMP spin-waits)")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--levels", default="1,8,32")
    parser.add_argument("--dtype", default="auto", help="tuneoff serve's dtype")
    args = parser.parse_args()
    global DTYPE
    DTYPE = args.dtype
    levels = [int(x) for x in args.levels.split(",")]
    prompts = [f"Is this movie review positive or negative? {ex.input}" for ex in sst2_items("dev", 64)]
    print(machine(), f"| server threads {args.threads} | tuneoff dtype {args.dtype} | load average {os.getloadavg()[0]:.1f}")
    results = {"tuneoff": measure("tuneoff", prompts, levels, args.requests, args.max_tokens, args.threads)}
    try:
        import llama_cpp.server  # noqa: F401
    except ImportError:
        print("llama.cpp baseline skipped: pip install 'llama-cpp-python[server]'")
        return
    results["llamacpp"] = measure("llamacpp", prompts, levels, args.requests, args.max_tokens, args.threads)
    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    print("\n| concurrency | tuneoff req/s | llama.cpp req/s | ratio | tuneoff p50 / p95 (s) | llama.cpp p50 / p95 (s) |")
    print("|---|---|---|---|---|---|")
    for c in levels:
        t, l = results["tuneoff"][c], results["llamacpp"][c]
        print(f"| {c} | {t['rps']:.2f} | {l['rps']:.2f} | **{t['rps'] / l['rps']:.2f}x** | {t['p50']:.2f} / "
              f"{t['p95']:.2f} | {l['p50']:.2f} / {l['p95']:.2f} |")


if __name__ == "__main__":
    main()
