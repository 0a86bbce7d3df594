"""Streaming generation against a loopback teacher with heavy-tailed latency (issue 13).

The whole of `labtax.sdg.run.generate` (planning, journals, the streaming pipelines, the dispatcher,
the HTTP client, parsing, result files) on the shipped taxonomy, against a loopback OpenAI-compatible
server in another process whose every answer takes a lognormal time (σ = 1, mean 50 ms: median 30 ms,
one answer in a hundred over 300 ms). Side by side, in one run:

    one leaf     a freeform skill leaf, target 200
    five leaves  one of each kind and two more, target 200 each
    all leaves   the whole shipped taxonomy, target --all-target each

Reference: the concurrency-bound ideal, concurrency / mean latency (32 / 50 ms = 640 requests/s): no
client can keep more than `concurrency` requests in flight, and each takes 50 ms on average. The
ratio is requests sent per second over that ideal (the median of `--repeat` runs, with the range); the
client's CPU per request (this process; the server runs in another) says whether the client is the
limit. Each run is a fresh generation into an empty directory, start-up included (but not the first
imports of the process). Targets: ≥ 0.85 for one leaf, no loss
for all leaves, < 1 ms CPU per request.

    python benchmarks/generation_pipeline.py [--concurrency 32] [--mean 0.05] [--sigma 1.0] [--all-target 50]
"""

from __future__ import annotations

import argparse
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

# A loopback endpoint on asyncio streams, answering every stage in its free-text format after a
# lognormal delay, at a fraction of a millisecond of CPU each. Answers are unique per request seed so
# that generated candidates do not collide; judges keep most of them.
SERVER = r"""
import asyncio, json, math, random, re, sys
mean, sigma, concurrency_hint = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
mu = math.log(mean) - sigma * sigma / 2
rng = random.Random(7)
served = 0
models = json.dumps({"object": "list", "data": [{"id": "fake-teacher", "max_model_len": 8192}]}).encode()
def reply(data):
    return b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(data) + data
def answer(body):
    request = json.loads(body)
    prompt = request["messages"][-1]["content"]
    seed = request.get("seed", 0)
    count = int((re.search(r"Write (\d+) ", prompt) or [0, 3])[1])
    if "Write them as a numbered list" in prompt:
        return "\n".join(f"{i + 1}. Do task {seed}-{i} in its own way." for i in range(count))
    if "new contexts of the same kind" in prompt:
        return "\n".join(f"[Start of Context]\nContext {seed}-{i}: a shop sells {i + 2} apples.\n[End of Context]"
                         for i in range(count))
    if "question-answer pairs about facts" in prompt:
        return "\n".join(f"Q: What is fact {seed}-{i}?\nA: Fact {seed}-{i} is stated." for i in range(count))
    if "Write only the response" in prompt:
        return f"The answer to request {seed}."
    if "YES or NO" in prompt:
        return "Explanation: supported.\nAnswer: " + ("NO" if seed % 10 == 0 else "YES")
    if "Score: 3, 2 or 1" in prompt:
        return "Explanation: fine.\nScore: %d" % (1 if seed % 4 == 0 else 3)
    if "Score: 2, 1 or 0" in prompt:
        return "Explanation: fine.\nScore: %d" % (1 if seed % 9 == 0 else 2)
    return "Explanation: fine.\nScore: %d" % (0 if seed % 6 == 0 else 1)
async def handle(reader, writer):
    global served
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            match = re.search(rb"(?i)content-length: *(\d+)", head)
            body = await reader.readexactly(int(match.group(1))) if match else b""
            if head.startswith(b"GET"):
                writer.write(reply(models))
                continue
            await asyncio.sleep(rng.lognormvariate(mu, sigma))
            content = answer(body)
            served += 1
            data = json.dumps({"id": "x", "object": "chat.completion", "model": "fake-teacher",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                             "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 300, "completion_tokens": 40, "total_tokens": 340}}).encode()
            writer.write(reply(data))
    except (asyncio.IncompleteReadError, ConnectionError):
        writer.close()
async def count(reader, writer):
    writer.write(b"%d\n" % served)
    await writer.drain()
    writer.close()
async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=1024)
    counter = await asyncio.start_server(count, "127.0.0.1", 0)
    print("serving at http://127.0.0.1:%d/v1 count %d" % (server.sockets[0].getsockname()[1],
          counter.sockets[0].getsockname()[1]), flush=True)
    await server.serve_forever()
asyncio.run(main())
"""


def served(port: int) -> int:
    import socket

    with socket.create_connection(("127.0.0.1", port)) as connection:
        return int(connection.makefile().readline())


def run_case(name: str, leaves: list, url: str, count_port: int, target: int, concurrency: int, ideal: float) -> dict:
    from labtax.sdg.params import GenerationParams
    from labtax.sdg.run import generate
    from labtax.sdg.teacher_spec import TeacherSpec

    spec = TeacherSpec("fake-teacher", url, concurrency=concurrency)
    with tempfile.TemporaryDirectory() as out:
        before = served(count_port)
        wall, cpu = time.perf_counter(), time.process_time()
        result = generate(leaves, spec, Path(out), params=GenerationParams(target=target), project_root=REPO_ROOT)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        requests = served(count_port) - before
    kept = sum(row.kept for row in result.summary.leaves)
    wanted = sum(row.target for row in result.summary.leaves)
    return {
        "case": name,
        "leaves": len(leaves),
        "requests": requests,
        "planned": result.summary.planned_requests,
        "kept": f"{kept}/{wanted}",
        "seconds": wall,
        "rate": requests / wall,
        "ratio": requests / wall / ideal,
        "cpu_ms": 1000 * cpu / max(1, requests),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--mean", type=float, default=0.05, help="mean answer latency in seconds")
    parser.add_argument("--sigma", type=float, default=1.0, help="lognormal shape (1.0: heavy-tailed)")
    parser.add_argument("--target", type=int, default=200, help="samples per leaf, one and five leaves")
    parser.add_argument("--all-target", type=int, default=50, help="samples per leaf, the whole taxonomy")
    parser.add_argument("--cases", default="one,five,all")
    parser.add_argument("--repeat", type=int, default=3, help="runs per case; the median run is shown")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO_ROOT / "tools"))
    import aiohttp  # noqa: F401  (imported once per process by any run: not part of a case's time)

    from labtax.config import load_config
    from labtax.sdg import run  # noqa: F401
    from labtax.taxonomy.leaf import LeafKind
    from labtax.validate import load_leaves

    leaves = sorted(load_leaves(load_config(REPO_ROOT)).leaves, key=lambda leaf: leaf.path)
    freeform = [leaf for leaf in leaves if leaf.kind is LeafKind.FREEFORM_SKILL]
    five = [freeform[0], *[next(leaf for leaf in leaves if leaf.kind is kind) for kind in LeafKind]]
    five += [leaf for leaf in leaves if leaf not in five][: 5 - len(five)]
    cases = {"one": (freeform[:1], args.target), "five": (five, args.target), "all": (leaves, args.all_target)}
    ideal = args.concurrency / args.mean
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(args.mean), str(args.sigma), str(args.concurrency)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        match = re.search(r"(http://\S+) count (\d+)", line)
        if not match:
            raise SystemExit(f"the server did not start: {line!r}")
        url, count_port = match.group(1), int(match.group(2))
        load = os.getloadavg()[0]
        median = 1000 * args.mean * math.exp(-(args.sigma**2) / 2)
        print(f"lognormal latency: mean {args.mean * 1000:.0f} ms, sigma {args.sigma} (median {median:.0f} ms); "
              f"concurrency {args.concurrency}; ideal {ideal:.0f} requests/s; {os.cpu_count()} CPUs, "
              f"load average {load:.1f} at the start")  # fmt: skip
        print(f"{'case (ratio range)':<20}{'leaves':>7}{'requests':>9}{'planned':>8}{'kept':>10}"
              f"{'seconds':>9}{'req/s':>8}{'ratio':>7}{'CPU ms/req':>11}")  # fmt: skip
        for name in args.cases.split(","):
            chosen, target = cases[name]
            runs = [
                run_case(name, chosen, url, count_port, target, args.concurrency, ideal) for _ in range(args.repeat)
            ]
            row = sorted(runs, key=lambda r: r["ratio"])[len(runs) // 2]
            row["case"] = f"{name} ({min(r['ratio'] for r in runs):.2f}-{max(r['ratio'] for r in runs):.2f})"
            print(f"{row['case']:<20}{row['leaves']:>7}{row['requests']:>9}{row['planned']:>8}{row['kept']:>10}"
                  f"{row['seconds']:>9.2f}{row['rate']:>8.0f}{row['ratio']:>7.2f}{row['cpu_ms']:>11.2f}")  # fmt: skip
        print(f"load average {os.getloadavg()[0]:.1f} at the end")
    finally:
        server.terminate()
        server.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
