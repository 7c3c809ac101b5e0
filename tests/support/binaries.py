"""A real binary (alertmanager, prometheus) on a free loopback port, in a temporary directory.

``running_binary`` makes the directory (``prepare`` writes the binary's files into it),
starts the binary with the arguments ``argv(workdir, port)`` builds for a free port, its
output going to ``<name>.log`` there, and waits until ``ready`` says so. A binary that exits
before it is ready (most often: the free port was taken by someone else before it bound it)
is started again on another port, up to ``attempts`` times; the log keeps every attempt. At
the end the binary is stopped (terminated, then killed) and reaped, and the directory removed.
"""

from __future__ import annotations

import asyncio
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import IO

from tests.support.procs import env_without_responder, free_port, require_binary

START_ATTEMPTS = 3  # a free port may be taken by someone else before the binary binds it


class BinaryProcess:
    """A binary started on 127.0.0.1:``port``, and what it printed (in ``log_path``)."""

    def __init__(self, *, port: int, proc: subprocess.Popen[bytes], log_path: Path) -> None:
        self.port = port
        self.proc = proc
        self.log_path = log_path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        """What the binary printed so far (for failure messages)."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


class RunningBinary(BinaryProcess):
    """What ``running_binary`` yields: the process, and the directory it runs in."""

    def __init__(
        self, *, port: int, proc: subprocess.Popen[bytes], workdir: Path, log_path: Path
    ) -> None:
        super().__init__(port=port, proc=proc, log_path=log_path)
        self.workdir = workdir


async def stop_process(proc: subprocess.Popen[bytes], timeout_s: float = 10.0) -> None:
    """Terminate, give it ``timeout_s`` to exit, then kill; always reap the process."""
    if proc.poll() is None:
        proc.terminate()
        deadline = time.monotonic() + timeout_s
        while proc.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
    if proc.poll() is None:
        proc.kill()
    await asyncio.to_thread(proc.wait)


def _spawn(args: list[str], workdir: Path, log: IO[bytes]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        args,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        cwd=workdir,
        env=env_without_responder(),
    )


async def _started(
    binary: str,
    run: RunningBinary,
    ready: Callable[[RunningBinary], Awaitable[bool]],
    timeout_s: float,
) -> bool:
    """True once ready; False when it exited first (a port clash); error on timeout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if run.proc.poll() is not None:
            return False
        if await ready(run):
            return True
        await asyncio.sleep(0.05)
    if run.proc.poll() is not None:
        return False
    raise TimeoutError(f"{binary} not ready on {run.url} after {timeout_s}s:\n{run.log()}")


@asynccontextmanager
async def running_binary(
    binary: str,
    *,
    name: str,
    argv: Callable[[Path, int], Sequence[str]],
    ready: Callable[[RunningBinary], Awaitable[bool]],
    ready_timeout_s: float,
    prepare: Callable[[Path], None] | None = None,
    attempts: int = START_ATTEMPTS,
    pick_port: Callable[[], int] = free_port,
) -> AsyncIterator[RunningBinary]:
    """Run ``binary`` (a command on PATH) in a temporary directory ``responder-<name>-*``,
    with the arguments ``argv(workdir, port)``; yield it once ``ready(run)`` is true.

    ``prepare(workdir)`` runs first (to write config files). Each attempt takes a port from
    ``pick_port``; an attempt whose process exits before it is ready is retried, and the
    last one's failure raises ``RuntimeError`` with the log. Not ready (and still running)
    after ``ready_timeout_s`` raises ``TimeoutError``. The process is stopped and reaped
    and the directory removed on the way out, whatever happened.
    """
    path = require_binary(binary)
    with tempfile.TemporaryDirectory(prefix=f"responder-{name}-") as tmp:
        workdir = Path(tmp)
        if prepare is not None:
            prepare(workdir)
        log_path = workdir / f"{name}.log"
        with log_path.open("wb") as log:
            run: RunningBinary | None = None
            try:
                for attempt in range(attempts):
                    port = pick_port()
                    proc = _spawn([path, *argv(workdir, port)], workdir, log)
                    run = RunningBinary(port=port, proc=proc, workdir=workdir, log_path=log_path)
                    if await _started(binary, run, ready, ready_timeout_s):
                        break
                    await stop_process(proc)
                    if attempt == attempts - 1:
                        raise RuntimeError(f"{binary} did not start:\n{run.log()}")
                assert run is not None
                yield run
            finally:
                if run is not None:
                    await stop_process(run.proc)
