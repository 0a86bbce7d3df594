"""Teacher client throughput against a loopback OpenAI-compatible server with a fixed latency.

Reference: the ideal rate, concurrency / latency (32 / 50 ms = 640 requests/s). The client's own CPU
time per request (process CPU of this process; the server runs in another process) says whether the
client is the limit. Every request carries a real prompt (a judge's, with its worked examples) and every
answer is parsed by its free-text format, as in a generation run.

    python benchmarks/teacher_throughput.py [--requests 3000] [--concurrency 32] [--latency 0.05]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


# A loopback OpenAI-compatible endpoint on asyncio streams: it answers every chat completion with the
# same valid `instruction_judge` verdict after `latency` seconds, at ~0.1 ms of CPU each, so that the
# server is not what limits the measurement (tests/openai_server.py, on stdlib threads, tops out near
# 350 requests/s on the 2-CPU development machine; `--server tests` measures against it).
ASYNCIO_SERVER = r"""
import asyncio, json, re, sys
latency = float(sys.argv[1])
content = "Explanation: clear and on task.\nScore: 1"
body = json.dumps({"id": "x", "object": "chat.completion", "model": "fake-teacher",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 50, "completion_tokens": 10, "total_tokens": 60}}).encode()
models = json.dumps({"object": "list", "data": [{"id": "fake-teacher", "max_model_len": 8192}]}).encode()
def reply(data):
    return b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(data) + data
async def handle(reader, writer):
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            match = re.search(rb"(?i)content-length: *(\d+)", head)
            if match:
                await reader.readexactly(int(match.group(1)))
            if head.startswith(b"GET"):
                writer.write(reply(models))
            else:
                await asyncio.sleep(latency)
                writer.write(reply(body))
    except (asyncio.IncompleteReadError, ConnectionError):
        writer.close()
async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=512)
    print("serving at http://127.0.0.1:%d/v1" % server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()
asyncio.run(main())
"""


def start_server(latency: float, kind: str) -> tuple[subprocess.Popen[str], str]:
    if kind == "asyncio":
        command = [sys.executable, "-c", ASYNCIO_SERVER, str(latency)]
    else:
        command = [sys.executable, "-m", "tests.openai_server", "--port", "0", "--latency", str(latency)]
    server = subprocess.Popen(
        command,
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
    from labtax.sdg.openai_teacher import OpenAITeacher, TeacherSettings
    from labtax.sdg.prompts import load_prompt
    from labtax.sdg.teacher import TeacherRequest

    template = load_prompt("instruction_judge")
    batch = [
        TeacherRequest(
            f"k{i}",
            template.name,
            template.render(task_description="Write a haiku.", instruction=f"Write a haiku about case {i}."),
            None,
            256,
            0.0,
            i,
            answer=template.answer,
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


async def run_minimal(url: str, requests: int, concurrency: int) -> tuple[float, float]:
    """The cheapest possible client, for reference: raw asyncio streams, hand-written HTTP/1.1, one
    connection per slot, no parsing beyond Content-Length. What it reaches is what the machine and
    the server allow; a gap between it and labtax is the cost of the client."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    body = json.dumps({"model": "fake-teacher", "messages": [{"role": "user", "content": "Candidate instruction:\nx"}],
                       "response_format": {"json_schema": {"name": "instruction_judge"}}}).encode()  # fmt: skip
    head = (
        f"POST {parts.path}/chat/completions HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    counter = iter(range(requests))

    async def worker() -> None:
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        for _ in counter:
            writer.write(head + body)
            headers = await reader.readuntil(b"\r\n\r\n")
            length = int(re.search(rb"Content-Length: (\d+)", headers).group(1))  # type: ignore[union-attr]
            await reader.readexactly(length)
        writer.close()

    wall, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - wall, time.process_time() - cpu


def busy_share(seconds: float = 1.0) -> float:
    """The share of one core a busy process gets on this machine right now (1.0 when idle)."""
    wall, cpu = time.perf_counter(), time.process_time()
    while time.perf_counter() - wall < seconds:
        pass
    return (time.process_time() - cpu) / (time.perf_counter() - wall)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--server", choices=("asyncio", "tests"), default="asyncio", help="the loopback server")
    args = parser.parse_args()
    share = busy_share()
    server, url = start_server(args.latency, args.server)
    try:
        wall, cpu, server_cpu, ok = asyncio.run(run(url, args.requests, args.concurrency, server.pid))
        minimal_wall, minimal_cpu = asyncio.run(run_minimal(url, args.requests, args.concurrency))
    finally:
        server.terminate()
        server.wait()
    ideal = args.concurrency / args.latency
    rate = args.requests / wall
    cpu_ms = 1000 * cpu / args.requests
    one_core = 1000 / cpu_ms
    print(
        f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; server: {args.server}; "
        f"{ok}/{args.requests} answers valid"
    )
    print(f"{'':<34}{'labtax':>10}{'reference':>11}{'ratio':>7}  reference")
    print(
        f"{'requests/s':<34}{rate:>10.0f}{ideal:>11.0f}{rate / ideal:>7.2f}"
        f"  ideal: {args.concurrency} / {args.latency * 1000:.0f} ms"
    )
    print(f"{'client CPU ms per request':<34}{cpu_ms:>10.3f}{1.0:>11.3f}{cpu_ms:>7.2f}  the issue's bound, 1 ms")
    print(f"{'rate one core of this CPU allows':<34}{one_core:>10.0f}{ideal:>11.0f}{one_core / ideal:>7.2f}  ideal")
    print(f"{'CPU cores the client got':<34}{cpu / wall:>10.2f}{1.0:>11.2f}{cpu / wall:>7.2f}  one whole core")
    print(
        f"{'rate the CPU share allows':<34}{share * one_core:>10.0f}{ideal:>11.0f}{share * one_core / ideal:>7.2f}"
        f"  a busy process gets {share:.2f} of a core here now"
    )
    minimal_rate = args.requests / minimal_wall
    print(
        f"{'requests/s vs a minimal client':<34}{rate:>10.0f}{minimal_rate:>11.0f}{rate / minimal_rate:>7.2f}"
        f"  raw asyncio streams ({1000 * minimal_cpu / args.requests:.3f} CPU ms/request)"
    )
    print(
        f"{'server (harness) CPU ms / request':<34}{1000 * server_cpu / args.requests:>10.3f}"
        f"{'':>11}{'':>7}  the loopback server's own cost"
    )
    print(f"{'CPU cores the server got':<34}{server_cpu / wall:>10.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
