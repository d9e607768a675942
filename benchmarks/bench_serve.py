"""Load test of `recon-cli serve` on loopback: batching on vs off side by side, then overload; memory sampled.

    .venv/bin/python benchmarks/bench_serve.py [--requests 1000] [--clients 8] [--blocks 10]
        [--soak 8000] [--time-limit 3600] [--out docs/results/serve.md]

Two real `recon-cli serve` processes on 127.0.0.1: batching on (--max-batch 8 --max-wait-ms 10) and off
(--max-batch 1: the same code, one picture per network run). Each gets `--requests` POST /reconstruct
(examples/*.png|jpg, mesh=inline GLB) from `--clients` concurrent httpx clients (one keep-alive connection
each), in `--blocks` blocks interleaved on, off, off, on, ... so both see the same machine load; a mode's
throughput is the median of its blocks' (requests / block wall time). Every answer is checked: status 200,
the JSON fields, a GLB in the base64 whose header length matches and which carries vertex colours. A
failure is an answer that fails a check; a lost response is a request without an HTTP answer (timeout,
reset). The server's RSS is read from /proc/<pid>/statm while its blocks run (first vs last decile of
the requests, slope per 1,000 requests), after a warm-up that fills the store of recent meshes. `--soak N`
then sends N more to the batching server, reading its RSS every 500 answers. Then an
overload burst (`--burst` clients at once against --max-queue) must get 503s with Retry-After, no lost
responses and a server still answering /health. Bounded: loopback only, a timeout per request, a time
limit for the whole run (blocks not started by then are skipped and the report says so).
"""

from __future__ import annotations

import argparse
import base64
import os
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PICTURES = sorted(p for p in (ROOT / "examples").iterdir() if p.suffix in (".png", ".jpg"))
REQUEST_TIMEOUT_S = 120.0
FIELDS = ("status", "error", "confidence", "volume", "bbox", "timings_ms", "batch_size", "mesh")
FLAT_PERCENT = 3.0  # last-decile RSS within this much of the first decile counts as flat
MODES = {"batching on": ("--max-batch", "8", "--max-wait-ms", "10"), "batching off": ("--max-batch", "1")}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ServerProcess:
    """`recon-cli serve` in its own process on 127.0.0.1:<free port>, stderr to a temporary file."""

    def __init__(self, options: tuple[str, ...]):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.TemporaryFile("w+")  # a pipe nobody reads could fill and stall the server
        self.process = subprocess.Popen([sys.executable, "-m", "recon.cli.main", "serve", "--port", str(self.port),
                                         *options], stdout=subprocess.DEVNULL, stderr=self.log, text=True)
        deadline = time.monotonic() + 300
        while not self.healthy():
            if self.process.poll() is not None:
                self.log.seek(0)
                raise SystemExit(f"server {' '.join(options)} exited: {self.log.read()[-2000:]}")
            if time.monotonic() > deadline:
                raise SystemExit(f"server {' '.join(options)} did not start in 300 s")
            time.sleep(0.5)

    def healthy(self) -> bool:
        try:
            return self.process.poll() is None and httpx.get(f"{self.url}/health", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    def rss_mb(self) -> float:
        with open(f"/proc/{self.process.pid}/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6

    def batches(self) -> tuple[int, int]:
        """(network runs, pictures in them) so far, from /metrics."""
        values = {}
        for line in httpx.get(f"{self.url}/metrics", timeout=30).text.splitlines():
            name, _, value = line.partition(" ")
            values[name] = value
        return int(values["recon_batches_total"]), int(values["recon_batched_pictures_total"])

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


@dataclass
class Outcome:
    seconds: float
    code: int | None  # None: lost (no HTTP answer)
    problem: str | None  # why an answer failed its checks (None: it passed)
    retry_after: str | None = None


def check(response: httpx.Response, max_batch: int) -> str | None:
    """None when the answer is a complete reconstruction with its coloured GLB, else what is wrong."""
    if response.status_code != 200:
        return f"HTTP {response.status_code}"
    try:
        body = response.json()
    except ValueError:
        return "not JSON"
    missing = [name for name in FIELDS if name not in body]
    if missing:
        return f"missing {missing[0]}"
    if body["status"] not in ("ok", "low_confidence") or not 1 <= body["batch_size"] <= max_batch:
        return f"status {body['status']}, batch {body['batch_size']}"
    try:
        glb = base64.b64decode(body["mesh"]["base64"], validate=True)
    except (KeyError, TypeError, ValueError):
        return "no inline mesh"
    if glb[:4] != b"glTF" or len(glb) < 12 or struct.unpack("<I", glb[8:12])[0] != len(glb) or b"COLOR_0" not in glb:
        return "mesh bytes are not a whole coloured GLB"
    return None


def post(session: httpx.Client, url: str, payload: tuple[str, bytes], max_batch: int) -> Outcome:
    start = time.perf_counter()
    try:
        response = session.post(f"{url}/reconstruct", files={"image": payload}, data={"mesh": "inline"})
    except httpx.TransportError:  # timeouts included: no HTTP answer came
        return Outcome(time.perf_counter() - start, None, "lost")
    return Outcome(time.perf_counter() - start, response.status_code, check(response, max_batch),
                   response.headers.get("retry-after"))


def load(url: str, count: int, clients: int, payloads: list, max_batch: int, deadline: float,
         done=lambda: None) -> list[Outcome]:
    """`count` requests from `clients` concurrent clients (none started after `deadline`); done() after each."""
    lock, taken, out = threading.Lock(), [0], []

    def client() -> None:
        with httpx.Client(timeout=REQUEST_TIMEOUT_S) as session:
            while time.monotonic() < deadline:
                with lock:
                    index = taken[0]
                    taken[0] += 1
                if index >= count:
                    return
                outcome = post(session, url, payloads[index % len(payloads)], max_batch)
                with lock:
                    out.append(outcome)
                    done()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return out


class MemorySampler:
    """Samples the RSS of the server whose block is running, tagged with its count of finished requests."""

    def __init__(self, servers: dict, period_s: float = 0.2):
        self.servers, self.period_s = servers, period_s
        self.samples = {name: [] for name in servers}  # (requests finished, MB)
        self.finished = {name: 0 for name in servers}
        self.active: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def count(self, name: str) -> None:  # called under load()'s lock
        self.finished[name] += 1

    def sample(self, name: str) -> None:
        self.samples[name].append((self.finished[name], self.servers[name].rss_mb()))

    def _sample(self) -> None:
        while not self._stop.wait(self.period_s):
            name = self.active
            if name is not None:
                self.sample(name)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def summary(self, name: str, total: int) -> dict:
        done, rss = np.array(self.samples[name]).T
        first, last = rss[done <= total * 0.1], rss[done >= total * 0.9]
        slope = np.polyfit(done, rss, 1)[0] * 1000 if len(set(done)) > 1 else float("nan")
        return {"start": rss[0], "end": rss[-1], "max": rss.max(), "first": np.median(first),
                "last": np.median(last), "slope": slope, "samples": len(rss)}


def soak(server: ServerProcess, count: int, clients: int, payloads: list, max_batch: int, deadline: float,
         every: int = 500) -> list[str]:
    """`count` more requests to one server, its RSS read every `every` answers: whether memory settles.
    The first 1,000 are left out of the slope: engines' and the allocator's caches fill over them."""
    marks, answered = [(0, server.rss_mb())], [0]

    def done() -> None:  # under load()'s lock
        answered[0] += 1
        if answered[0] % every == 0:
            marks.append((answered[0], server.rss_mb()))

    outcomes = load(server.url, count, clients, payloads, max_batch, deadline, done)
    bad = sum(o.code != 200 or o.problem is not None for o in outcomes)
    done_at, rss = np.array(marks, dtype=float).T
    later = done_at >= 1000
    slope = np.polyfit(done_at[later], rss[later], 1)[0] * 1000 if later.sum() > 2 else float("nan")
    return [f"Soak (batching server, after everything above): {len(outcomes)} of {count} requests answered, "
            f"{bad} failed or lost. RSS MB every {every} answers: " + " ".join(f"{v:.0f}" for v in rss), "",
            f"**After the first 1,000: slope {slope:+.1f} MB / 1,000 requests, range {rss[later].min():.0f}-"
            f"{rss[later].max():.0f} MB** (least squares over {int(later.sum())} readings)"]


def percentiles(outcomes: list[Outcome]) -> list[float]:
    return [float(np.percentile([o.seconds * 1000 for o in outcomes], q)) for q in (50, 95, 99)]


def mode_rows(results: dict, throughputs: dict, batches: dict, memory: dict) -> list[str]:
    rows = ["| mode | requests | ok | failures | lost | req/s (median of blocks) | p50 ms | p95 ms | p99 ms | "
            "mean batch |", "|---|---|---|---|---|---|---|---|---|---|"]
    for name, outcomes in results.items():
        lost = sum(o.code is None for o in outcomes)
        failed = sum(o.problem is not None for o in outcomes) - lost
        p50, p95, p99 = percentiles(outcomes)
        rows.append(f"| {name} | {len(outcomes)} | {len(outcomes) - failed - lost} | {failed} | {lost} | "
                    f"{np.median(throughputs[name]):.2f} | {p50:.0f} | {p95:.0f} | {p99:.0f} | {batches[name]:.2f} |")
    rows += ["", f"| server RSS MB | start | end | max | first decile | last decile | slope MB / 1,000 req | "
                 f"flat (last within {FLAT_PERCENT:g}% of first) |", "|---|---|---|---|---|---|---|---|"]
    for name, m in memory.items():
        flat = abs(m["last"] - m["first"]) <= FLAT_PERCENT / 100 * m["first"]
        rows.append(f"| {name} | {m['start']:.0f} | {m['end']:.0f} | {m['max']:.0f} | {m['first']:.1f} | "
                    f"{m['last']:.1f} | {m['slope']:+.1f} | {'yes' if flat else 'NO'} |")
    return rows


def overload(server: ServerProcess, clients: int, payload: tuple[str, bytes], max_batch: int) -> list[str]:
    """`clients` requests released at once at a queue smaller than that: 503s, not timeouts or a crash."""
    gate, out = threading.Barrier(clients), []

    def client() -> None:
        with httpx.Client(timeout=REQUEST_TIMEOUT_S) as session:
            gate.wait()
            out.append(post(session, server.url, payload, max_batch))

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    busy = [o for o in out if o.code == 503]
    ok = sum(o.problem is None for o in out)
    lost = sum(o.code is None for o in out)
    other = len(out) - ok - len(busy) - lost
    with_retry = sum(o.retry_after is not None for o in busy)
    slowest_busy = max((o.seconds for o in busy), default=float("nan")) * 1000
    alive = server.healthy()
    return ["| clients at once | 200 (checked) | 503 | 503 with Retry-After | lost | other | slowest 503 ms | "
            "slowest answer ms | server answers /health after |", "|---|---|---|---|---|---|---|---|---|",
            f"| {clients} | {ok} | {len(busy)} | {with_retry} | {lost} | {other} | {slowest_busy:.0f} | "
            f"{max(o.seconds for o in out) * 1000:.0f} | {'yes' if alive else 'NO'} |"]


def pick_payloads(server: ServerProcess) -> tuple[list, list[str]]:
    """The example pictures whose answer passes every check (a picture with no object has no mesh)."""
    kept, dropped = [], []
    with httpx.Client(timeout=REQUEST_TIMEOUT_S) as session:
        for path in PICTURES:
            payload = (path.name, path.read_bytes())
            problem = post(session, server.url, payload, 8).problem
            (dropped if problem else kept).append(f"{path.name} ({problem})" if problem else payload)
    if not kept:
        raise SystemExit(f"no example picture gives a coloured mesh: {', '.join(dropped)}")
    return kept, dropped


def git_commit() -> str:
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return done.stdout.strip() or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000, help="measured requests per mode")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients")
    parser.add_argument("--blocks", type=int, default=10, help="blocks per mode, interleaved on/off/off/on")
    parser.add_argument("--warmup", type=int, default=80, help="requests per mode before measuring (at least the "
                        "64 recent meshes the server keeps, so its store is full)")
    parser.add_argument("--burst", type=int, default=48, help="clients at once in the overload phase")
    parser.add_argument("--max-queue", type=int, default=16, help="the servers' --max-queue")
    parser.add_argument("--soak", type=int, default=0, help="then this many more requests to the batching server, "
                        "its RSS read every 500 (0: none)")
    parser.add_argument("--time-limit", type=float, default=3600.0, help="seconds for the whole run")
    parser.add_argument("--out", type=Path, help="also write the markdown report here")
    args = parser.parse_args()
    if min(args.requests, args.clients, args.blocks, args.burst, args.max_queue) < 1 or args.requests < args.blocks:
        parser.error("--requests, --clients, --blocks, --burst, --max-queue: at least 1, and --requests >= --blocks")
    deadline = time.monotonic() + args.time_limit
    load_before = os.getloadavg()[0]
    servers = {name: ServerProcess((*options, "--max-queue", str(args.max_queue))) for name, options in MODES.items()}
    max_batch = {name: int(options[1]) for name, options in MODES.items()}
    try:
        payloads, dropped = pick_payloads(servers["batching on"])
        for name, server in servers.items():
            load(server.url, args.warmup, args.clients, payloads, max_batch[name], deadline)
        sampler = MemorySampler(servers)
        results, throughputs = {name: [] for name in servers}, {name: [] for name in servers}
        counters = {name: server.batches() for name, server in servers.items()}
        per_block, blocks_run = args.requests // args.blocks, 0
        for block in range(args.blocks):
            if time.monotonic() >= deadline:
                break
            for name in (list(servers) if block % 2 == 0 else list(reversed(servers))):
                sampler.sample(name)  # each block's ends too: the deciles always have samples
                sampler.active = name
                start = time.perf_counter()
                outcomes = load(servers[name].url, per_block, args.clients, payloads, max_batch[name], deadline,
                                lambda name=name: sampler.count(name))
                throughputs[name].append(len(outcomes) / (time.perf_counter() - start))
                sampler.active = None
                sampler.sample(name)
                results[name] += outcomes
            blocks_run += 1
        sampler.stop()
        batches = {}
        for name, server in servers.items():
            runs, pictures = np.subtract(server.batches(), counters[name])
            batches[name] = pictures / max(runs, 1)
        memory = {name: sampler.summary(name, len(results[name])) for name in servers}
        soaked = soak(servers["batching on"], args.soak, args.clients, payloads, max_batch["batching on"],
                      deadline) if args.soak > 0 else []
        burst = overload(servers["batching on"], args.burst, payloads[0], max_batch["batching on"])
    finally:
        for server in servers.values():
            server.stop()
    on, off = (np.median(throughputs[name]) for name in servers)
    pairs = np.divide(throughputs["batching on"], throughputs["batching off"])
    report = [f"# `recon-cli serve` load benchmark", "",
              f"commit {git_commit()}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {os.cpu_count()} cores, "
              f"load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after (the cores are shared with "
              "whatever else runs: compare the modes only with each other)", "",
              f"{args.clients} concurrent clients on loopback, {blocks_run} of {args.blocks} blocks of {per_block} "
              f"requests per mode (interleaved on/off/off/on), after {args.warmup} warm-up requests per mode; "
              f"mesh=inline GLB; pictures: {', '.join(p[0] for p in payloads)}"
              + (f"; left out (no mesh): {', '.join(dropped)}" if dropped else ""), ""]
    if blocks_run < args.blocks:
        report += [f"**Stopped at the {args.time_limit:g} s time limit after {blocks_run} blocks.**", ""]
    report += mode_rows(results, throughputs, batches, memory)
    report += ["", f"**Throughput with batching / without: {on / off:.2f}x** (medians of block throughputs; "
                   f"per block pair {np.median(pairs):.2f}x median, {pairs.min():.2f}-{pairs.max():.2f}x)", "",
               "block req/s, " + "; ".join(f"{name}: " + " ".join(f"{t:.2f}" for t in throughputs[name])
                                           for name in servers), "",
               *([*soaked, ""] if soaked else []),
               f"Overload (batching server, --max-queue {args.max_queue}):", ""] + burst
    text = "\n".join(report) + "\n"
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)


if __name__ == "__main__":
    main()
