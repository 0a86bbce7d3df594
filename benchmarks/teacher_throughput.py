"""Teacher client throughput against a loopback OpenAI-compatible server with a fixed latency.

Reference: the ideal rate, concurrency / latency (32 / 50 ms = 640 requests/s). The client's own CPU
time per request (process CPU of this process; the server runs in another process) says whether the
client is the limit. Every request carries a real prompt and JSON Schema, and every answer is parsed
and validated, as in a generation run.

    python benchmarks/teacher_throughput.py [--requests 3000] [--concurrency 32] [--latency 0.05]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def start_server(latency: float) -> tuple[subprocess.Popen[str], str]:
    server = subprocess.Popen(
        [sys.executable, "-m", "tests.openai_server", "--port", "0", "--latency", str(latency)],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    assert server.stdout is not None
    line = server.stdout.readline()
    match = re.search(r"(http://\S+)", line)
    if not match:
        server.kill()
        raise SystemExit(f"the server did not start: {line!r}")
    return server, match.group(1)


def process_cpu_s(pid: int) -> float:
    """utime + stime of another process, from /proc (Linux); 0 elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def run(url: str, requests: int, concurrency: int, server_pid: int) -> tuple[float, float, float, int]:
    from labtax.sdg.prompts import load_prompt
    from labtax.sdg.teacher import OpenAITeacher, TeacherRequest, TeacherSettings

    template = load_prompt("instruction_judge")
    batch = [
        TeacherRequest(
            f"k{i}",
            template.name,
            template.render(task_description="Write a haiku.", instruction=f"Write a haiku about case {i}."),
            template.schema,
            256,
            0.0,
            i,
        )
        for i in range(requests)
    ]
    async with OpenAITeacher(TeacherSettings(url, "fake-teacher", concurrency=concurrency)) as teacher:
        await asyncio.gather(*(teacher.complete(r) for r in batch[: concurrency * 2]))  # warm the connections
        wall, cpu, server_cpu = time.perf_counter(), time.process_time(), process_cpu_s(server_pid)
        results = await asyncio.gather(*(teacher.complete(r) for r in batch))
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        server_cpu = process_cpu_s(server_pid) - server_cpu
    return wall, cpu, server_cpu, sum(1 for r in results if r.ok)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--latency", type=float, default=0.05)
    args = parser.parse_args()
    server, url = start_server(args.latency)
    try:
        wall, cpu, server_cpu, ok = asyncio.run(run(url, args.requests, args.concurrency, server.pid))
    finally:
        server.terminate()
        server.wait()
    ideal = args.concurrency / args.latency
    rate = args.requests / wall
    cpu_ms = 1000 * cpu / args.requests
    one_core = 1000 / cpu_ms
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; {ok}/{args.requests} answers valid")
    print(f"{'':<34}{'labtax':>10}{'reference':>11}{'ratio':>7}  reference")
    print(
        f"{'requests/s':<34}{rate:>10.0f}{ideal:>11.0f}{rate / ideal:>7.2f}"
        f"  ideal: {args.concurrency} / {args.latency * 1000:.0f} ms"
    )
    print(f"{'client CPU ms per request':<34}{cpu_ms:>10.3f}{1.0:>11.3f}{cpu_ms:>7.2f}  the issue's bound, 1 ms")
    print(f"{'rate one core of this CPU allows':<34}{one_core:>10.0f}{ideal:>11.0f}{one_core / ideal:>7.2f}  ideal")
    print(f"{'CPU cores the client got':<34}{cpu / wall:>10.2f}{1.0:>11.2f}{cpu / wall:>7.2f}  one whole core")
    print(
        f"{'server (harness) CPU ms / request':<34}{1000 * server_cpu / args.requests:>10.3f}"
        f"{'':>11}{'':>7}  the fake teacher's own cost (stdlib threads)"
    )
    print(f"{'CPU cores the server got':<34}{server_cpu / wall:>10.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
