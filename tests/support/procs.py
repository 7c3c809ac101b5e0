"""Starting and stopping the real binaries the tests talk to (redis-server, alertmanager,
prometheus), each on a free loopback port, each stopped by the test that started it."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import redis


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(
    port: int, *, timeout_s: float = 10.0, proc: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout_s}s")


def require_binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(
            f"{name} is not installed; `make test` installs it (Debian package), "
            "or install it by hand"
        )
    return path


@dataclass
class RedisServer:
    port: int
    proc: subprocess.Popen[bytes] | None
    workdir: Path

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    def start(self) -> None:
        """(Re)start on the same port; no persistence: a restart loses all data."""
        self.proc = subprocess.Popen(
            [
                require_binary("redis-server"),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
                "--protected-mode",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port, proc=self.proc)
        client = redis.Redis(port=self.port)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.exceptions.BusyLoadingError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        client.close()


@contextlib.contextmanager
def redis_server() -> Iterator[RedisServer]:
    with tempfile.TemporaryDirectory(prefix="responder-redis-") as tmp:
        server = RedisServer(port=free_port(), proc=None, workdir=Path(tmp))
        server.start()
        try:
            yield server
        finally:
            server.stop()


def env_without_responder() -> dict[str, str]:
    """The environment for a child process: none of the RESPONDER_* the developer set, and
    triage off (the shipped pack's probes aim at the internet; tests stay on loopback)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RESPONDER_")}
    env["RESPONDER_TRIAGE"] = "false"
    return env


@dataclass
class ServeProcess:
    """``responder serve`` in a child process, as an operator would run it."""

    proc: subprocess.Popen[bytes]
    port: int
    stderr_path: Path
    stdout_path: Path
    kept: dict[str, str] | None = None  # what it printed, kept once it has stopped

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stderr(self) -> str:
        return self.kept["stderr"] if self.kept else self.stderr_path.read_text()

    def stdout(self) -> str:
        return self.kept["stdout"] if self.kept else self.stdout_path.read_text()


@contextlib.contextmanager
def serve_process(env: dict[str, str] | None = None, *args: str) -> Iterator[ServeProcess]:
    import sys

    port = free_port()
    with tempfile.TemporaryDirectory(prefix="responder-serve-") as tmp:
        err, out = Path(tmp) / "stderr", Path(tmp) / "stdout"
        with err.open("wb") as err_file, out.open("wb") as out_file:
            proc = subprocess.Popen(
                [sys.executable, "-m", "responder", "serve", "--port", str(port), *args],
                env={**env_without_responder(), **(env or {})},
                stdout=out_file,
                stderr=err_file,
            )
        served = ServeProcess(proc, port, err, out)
        try:
            wait_for_port(port, proc=proc, timeout_s=20)
            yield served
        finally:
            if proc.poll() is None:
                proc.send_signal(2)  # SIGINT, as Ctrl-C would
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
            served.kept = {"stdout": out.read_text(), "stderr": err.read_text()}
