"""Load on the HTTP API: N concurrent clients on loopback for a bounded time, batching on and off.

Each mode starts its own ``polyspeech serve`` process (batching on: ``--max-batch 16``; off:
``--max-batch 1``, one request computed at a time), waits for /health, then N client threads post
the committed example files to /v1/audio/transcriptions in their languages, one request after
another, for ``--seconds``. Requests answered while the clock runs are counted.

    python bench/serve_load.py                       # 16 clients, 30 s a mode, builtin:ctc
    python bench/serve_load.py --clients 4 --seconds 5
    python bench/serve_load.py --dtype int8         # the server's precision (default auto)
    python bench/serve_load.py --lm builtin:ctc-lm  # the server's --lm (default none: greedy)
    python bench/serve_load.py --smoke              # 2 clients, 1 s a mode: checks the script

Prints a table and writes JSON (``--out``, default bench/results/serve_load.json), with
``ratio``: requests/s with batching over those without (null if none were answered without).
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx2 as httpx
import numpy as np

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
MODES = {"batching on": 16, "batching off": 1}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def load(url: str, clients: int, seconds: float, files: list[tuple[str, bytes, str]]) -> dict:
    """``clients`` threads posting ``files`` round-robin for ``seconds``."""
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    start = time.monotonic()
    stop = start + seconds

    def client(index: int) -> None:
        with httpx.Client(timeout=120) as http:
            turn = index
            while time.monotonic() < stop:
                name, data, lang = files[turn % len(files)]
                turn += 1
                began = time.monotonic()
                try:
                    answer = http.post(
                        f"{url}/v1/audio/transcriptions",
                        data={"model": "m", "language": lang},
                        files={"file": (name, data)},
                    )
                    problem = None if answer.status_code == 200 else f"HTTP {answer.status_code}"
                except httpx.TransportError as error:
                    problem = type(error).__name__
                ended = time.monotonic()
                with lock:
                    if ended <= stop:
                        (errors.append(problem) if problem else latencies.append(ended - began))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    done = np.array(latencies)
    return {
        "requests": len(latencies),
        "requests_per_s": round(len(latencies) / seconds, 2),
        "p50_s": round(float(np.percentile(done, 50)), 3) if len(done) else None,
        "p99_s": round(float(np.percentile(done, 99)), 3) if len(done) else None,
        "errors": len(errors),
    }


def mean_batch(url: str) -> float | None:
    """The server's mean batch size, from its Prometheus histogram."""
    values = {}
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        for name in ("polyspeech_batch_size_sum", "polyspeech_batch_size_count"):
            if line.startswith(name + " "):
                values[name] = float(line.split()[1])
    count = values.get("polyspeech_batch_size_count", 0)
    return round(values["polyspeech_batch_size_sum"] / count, 2) if count else None


def run_mode(
    model: str, dtype: str, lm: str, max_batch: int, clients: int, seconds: float, files
) -> dict:
    port = free_port()
    command = [
        sys.executable, "-m", "polyspeech", "serve", "--model", f"m={model}", "--dtype", dtype,
        "--lm", lm, "--port", str(port), "--max-batch", str(max_batch),
        "--max-queue", str(4 * clients),
    ]  # fmt: skip
    server = subprocess.Popen(command)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if server.poll() is not None:
                raise SystemExit(f"the server exited with {server.returncode}")
            try:
                httpx.get(f"{url}/health")
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise SystemExit("the server did not start in 120 s") from None
                time.sleep(0.2)
        load(url, clients, min(3.0, seconds), files)  # warm-up, not counted
        report = load(url, clients, seconds, files)
        report["mean_batch"] = mean_batch(url)
        return report
    finally:
        server.terminate()
        server.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="builtin:ctc")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--dtype", default="auto", help="the server's --dtype")
    parser.add_argument("--lm", default="none", help="the server's --lm")
    parser.add_argument("--out", type=Path, default=Path("bench/results/serve_load.json"))
    parser.add_argument("--smoke", action="store_true", help="2 clients, 1 s a mode")
    args = parser.parse_args()
    if args.smoke:
        args.clients, args.seconds = 2, 1.0
    rows = [json.loads(line) for line in (EXAMPLES / "examples.jsonl").read_text().splitlines()]
    files = [(r["audio"], (EXAMPLES / r["audio"]).read_bytes(), r["lang"]) for r in rows]
    results = {
        mode: run_mode(
            args.model, args.dtype, args.lm, max_batch, args.clients, args.seconds, files
        )
        for mode, max_batch in MODES.items()
    }
    on, off = results["batching on"], results["batching off"]
    ratio = on["requests_per_s"] / off["requests_per_s"] if off["requests_per_s"] else None
    print(f"{args.clients} clients, {args.seconds:g} s a mode, model {args.model}, lm {args.lm}")
    print(f"{'mode':<14}{'req/s':>8}{'p50 s':>8}{'p99 s':>8}{'errors':>8}{'batch':>8}")
    for mode, r in results.items():
        cells = [r[key] for key in ("requests_per_s", "p50_s", "p99_s", "errors", "mean_batch")]
        print(f"{mode:<14}" + "".join(f"{'-' if c is None else c:>8}" for c in cells))
    if ratio is not None:
        print(f"batching on / off: {ratio:.2f}x requests/s")
    from polyspeech.ctc.precision import native_bf16
    from polyspeech.files import atomic_text_file

    summary = {"clients": args.clients, "seconds": args.seconds, "model": args.model,
               "dtype": args.dtype, "lm": args.lm, "native_bf16": native_bf16(), "modes": results,
               "ratio": ratio}  # fmt: skip
    with atomic_text_file(args.out) as stream:
        stream.write(json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    main()
