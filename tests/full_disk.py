"""A real, small, fillable file system for tests: a tmpfs mounted in a private mount namespace.

No mock: writes on it fail with the kernel's ENOSPC exactly as on a full disk. The namespace belongs to
one long-lived `sleep` process (root: `unshare --mount`; anyone else: a user namespace, `unshare -Urm`),
commands run inside it with `nsenter`, and the mount disappears with that process, so a failed test
leaves nothing mounted. Where neither works (no util-linux, user namespaces disabled) the test is skipped
with the reason.

    with small_disk(tmp_path / "disk", 8 << 20) as disk:
        disk.fill(leave=1 << 20)                   # a ballast file leaves 1 MiB free
        result = disk.run([sys.executable, ...])   # the command sees the tmpfs at tmp_path / "disk"
        disk.free()                                 # delete the ballast: "free some space"
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

BALLAST = ".ballast"


@dataclass
class SmallDisk:
    path: Path
    pid: int
    user_namespace: bool

    def run(
        self, args: Sequence[str], *, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 600
    ) -> subprocess.CompletedProcess[str]:
        """Run `args` in the namespace that sees the small file system (stdout and stderr captured)."""
        enter = ["nsenter", "-t", str(self.pid), "-m"]
        if self.user_namespace:
            enter += ["-U", "--preserve-credentials"]
        enter.append(f"--wd={cwd or Path.cwd()}")
        return subprocess.run(
            [*enter, "--", *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
        )

    def check(self, args: Sequence[str]) -> str:
        result = self.run(args)
        assert result.returncode == 0, f"{args}: {result.stderr}"
        return result.stdout

    def available(self) -> int:
        blocks, block_size = self.check(["stat", "-f", "-c", "%a %S", str(self.path)]).split()
        return int(blocks) * int(block_size)

    def fill(self, leave: int = 0) -> None:
        """Leave about `leave` bytes free (to the 4 KiB page), with a ballast file."""
        size = max(self.available() - leave, 0)
        self.check(["sh", "-c", f'head -c {size} /dev/zero >> "$1"', "sh", str(self.path / BALLAST)])

    def free(self) -> None:
        self.check(["rm", "-f", str(self.path / BALLAST)])

    def copy_out(self, source: Path, target: Path) -> None:
        """Copy a tree from the small file system to one the test process sees."""
        self.check(["cp", "-a", str(source), str(target)])


@contextmanager
def small_disk(path: Path, size: int) -> Iterator[SmallDisk]:
    """A tmpfs of `size` bytes at `path`, visible only to the commands `SmallDisk.run` starts."""
    if not (shutil.which("unshare") and shutil.which("nsenter")):
        pytest.skip("needs unshare and nsenter (util-linux) for a real full file system")
    path.mkdir(parents=True, exist_ok=True)
    user_namespace = os.geteuid() != 0
    as_user = ["--user", "--map-root-user"] if user_namespace else []
    unshare = ["unshare", *as_user, "--mount", "--propagation=private"]
    script = f'mount -t tmpfs -o size={size},mode=1777 labtax-test "$1" && echo ready && exec sleep 3600'
    process = subprocess.Popen(
        [*unshare, "sh", "-c", script, "sh", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        if process.stdout.readline().strip() != "ready":
            process.kill()
            _, error = process.communicate()
            pytest.skip(f"cannot mount a tmpfs in a private mount namespace here: {error.strip()}")
        yield SmallDisk(path, process.pid, user_namespace)
    finally:
        process.kill()
        process.wait()
