"""Load test of `recon-cli serve` on loopback: batching on vs off side by side, overload, memory.

    .venv/bin/python benchmarks/bench_serve.py [--requests 1000] [--clients 8] [--rounds 10]

Two servers run as real `recon-cli serve` processes on 127.0.0.1: one batching (--max-batch 8,
--max-wait-ms 5) and one not (--max-batch 1). The requests (examples/*.png|jpg, POST /reconstruct,
mesh by URL) go in rounds, alternating which server goes first, from `--clients` concurrent clients
(httpx, one keep-alive connection each), so both see the same machine load. Reported per mode: answers
by status code, lost responses (a request without an HTTP answer: timeout, reset), throughput, latency
p50/p95/max, the server's resident memory after the warm-up and at the end. Then an overload burst
(`--burst` clients at once against a queue of --max-queue) must get 503s with Retry-After, and
no timeouts. Everything is bounded: loopback only, a timeout per request and per run.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import psutil

ROOT = Path(__file__).resolve().parents[1]
PICTURES = sorted(p for p in (ROOT / "examples").iterdir() if p.suffix in (".png", ".jpg"))
REQUEST_TIMEOUT_S = 120.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ServerProcess:
    def __init__(self, *options: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen([sys.executable, "-m", "recon.cli.main", "serve", "--port", str(self.port),
                                         *options], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 300
        while True:
            if self.process.poll() is not None:
                raise SystemExit(f"server {options} exited: {self.process.stderr.read()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"server {options} did not start in 300 s")
            time.sleep(0.5)

    def rss_mb(self) -> float:
        return psutil.Process(self.process.pid).memory_info().rss / 1e6

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()


def load(url: str, count: int, clients: int, payloads: list[tuple[str, bytes]]) -> list[tuple[int | None, float]]:
    """`count` POST /reconstruct from `clients` concurrent clients: (status or None when lost, seconds) each."""
    lock, next_index, out = threading.Lock(), [0], []

    def client() -> None:
        with httpx.Client(timeout=REQUEST_TIMEOUT_S) as session:
            while True:
                with lock:
                    index = next_index[0]
                    next_index[0] += 1
                if index >= count:
                    return
                name, data = payloads[index % len(payloads)]
                start = time.perf_counter()
                try:
                    status = session.post(f"{url}/reconstruct", files={"image": (name, data)}).status_code
                except httpx.HTTPError:
                    status = None
                with lock:
                    out.append((status, time.perf_counter() - start))

    with ThreadPoolExecutor(clients) as pool:
        for future in [pool.submit(client) for _ in range(clients)]:
            future.result()
    return out


def summary(name: str, answers: list, seconds: float, memory: tuple[float, float]) -> str:
    latencies = np.array([s for _, s in answers]) * 1000
    codes = {}
    for status, _ in answers:
        codes[status] = codes.get(status, 0) + 1
    lost = codes.pop(None, 0)
    code_text = " ".join(f"{c}:{n}" for c, n in sorted(codes.items()))
    return (f"| {name} | {len(answers)} | {code_text} | {lost} | {len(answers) / seconds:.2f} | "
            f"{np.percentile(latencies, 50):.0f} | {np.percentile(latencies, 95):.0f} | {latencies.max():.0f} | "
            f"{memory[0]:.0f} -> {memory[1]:.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000, help="per mode")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=10, help="alternations between the two servers")
    parser.add_argument("--burst", type=int, default=48, help="clients at once in the overload test")
    parser.add_argument("--max-queue", type=int, default=16)
    args = parser.parse_args()
    payloads = [(p.name, p.read_bytes()) for p in PICTURES]
    load_before = os.getloadavg()
    print(f"{args.requests} requests per mode from {args.clients} clients, {args.rounds} interleaved rounds; "
          f"{os.cpu_count()} cores, load average {load_before[0]:.2f} before (shared with other work)")
    modes = {"batching on (max 8, 5 ms)": ServerProcess("--max-batch", "8", "--max-wait-ms", "5",
                                                          "--max-queue", str(args.max_queue)),
             "batching off (max 1)": ServerProcess("--max-batch", "1", "--max-queue", str(args.max_queue))}
    try:
        answers = {name: [] for name in modes}
        busy = {name: 0.0 for name in modes}
        memory = {}
        for name, server in modes.items():  # warm-up: first runs allocate the network's buffers
            load(server.url, args.clients * 2, args.clients, payloads)
            memory[name] = [server.rss_mb()]
        per_round = max(1, args.requests // args.rounds)
        for round_index in range(args.rounds):
            order = list(modes) if round_index % 2 == 0 else list(reversed(modes))
            for name in order:
                start = time.perf_counter()
                answers[name] += load(modes[name].url, per_round, args.clients, payloads)
                busy[name] += time.perf_counter() - start
                memory[name].append(modes[name].rss_mb())
        print("\n| mode | requests | answers (status:count) | lost | req/s | p50 ms | p95 ms | max ms | server RSS MB (after warm-up -> end) |")
        print("|---|---|---|---|---|---|---|---|---|")
        for name in modes:
            print(summary(name, answers[name], busy[name], (memory[name][0], memory[name][-1])))
        names = list(modes)
        speedup = (len(answers[names[0]]) / busy[names[0]]) / (len(answers[names[1]]) / busy[names[1]])
        print(f"\nthroughput with batching / without: {speedup:.2f}x")
        for name in modes:
            growth = max(memory[name]) - memory[name][0]
            print(f"{name}: RSS peak {max(memory[name]):.0f} MB, {growth:+.0f} MB over the warm-up level "
                  f"(sampled after each of {args.rounds} rounds)")
        server = modes[names[0]]
        start = time.perf_counter()
        burst = load(server.url, args.burst, args.burst, payloads)
        codes = {}
        for status, _ in burst:
            codes[status] = codes.get(status, 0) + 1
        print(f"\noverload: {args.burst} clients at once, queue {args.max_queue}: "
              + ", ".join(f"{'lost' if c is None else c}: {n}" for c, n in sorted(codes.items(), key=str))
              + f"; slowest answer {max(s for _, s in burst) * 1000:.0f} ms; {time.perf_counter() - start:.1f} s")
    finally:
        for server in modes.values():
            server.stop()
    print(f"load average {os.getloadavg()[0]:.2f} after")


if __name__ == "__main__":
    main()
