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
from dataclasses import dataclass, field
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
    extra: list[str] = field(default_factory=list)  # more redis-server options

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    def kill(self) -> None:
        """SIGKILL, as a crash or an OOM kill would: nothing is flushed."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def start(self) -> None:
        """(Re)start on the same port; no persistence (unless ``extra`` turns it on): a
        restart loses all data."""
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
                *self.extra,
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
def redis_server(*extra: str) -> Iterator[RedisServer]:
    """``extra``: more options, e.g. ``--replicaof 127.0.0.1 <port>``, ``--appendfsync``."""
    with tempfile.TemporaryDirectory(prefix="responder-redis-") as tmp:
        server = RedisServer(port=free_port(), proc=None, workdir=Path(tmp), extra=list(extra))
        server.start()
        try:
            yield server
        finally:
            server.stop()


@contextlib.contextmanager
def redis_replica(master: RedisServer) -> Iterator[RedisServer]:
    """A replica of ``master``, returned once it confirms the master's writes (WAIT)."""
    client = redis.Redis(port=master.port)
    try:  # Redis 7 waits 5 s for more replicas before a diskless full sync: not here
        client.config_set("repl-diskless-sync-delay", 0)
    finally:
        client.close()
    with redis_server(
        "--replicaof", "127.0.0.1", str(master.port), "--repl-diskless-sync-delay", "0"
    ) as replica:  # (a replica is promoted in a failover)
        wait_replica_linked(replica, master)
        yield replica


def wait_replica_linked(
    replica: RedisServer, master: RedisServer, *, timeout_s: float = 20.0
) -> None:
    """Until ``replica``'s link is up and every replica of ``master`` confirms its writes:
    a replica just synced answers the first WAITs only after its first ack (up to 1 s)."""
    deadline = time.monotonic() + timeout_s
    on_replica = redis.Redis(port=replica.port, decode_responses=True)
    on_master = redis.Redis(port=master.port, decode_responses=True)
    try:
        while on_replica.info("replication").get("master_link_status") != "up":
            if time.monotonic() > deadline:
                raise TimeoutError(f"replica on {replica.port} not linked after {timeout_s}s")
            time.sleep(0.05)
        while True:
            replicas = int(on_master.info("replication")["connected_slaves"])
            # a write of no key (PUBLISH is replicated), then the replicas' confirmation
            on_master.publish("responder-tests:replica-probe", "")
            if replicas and int(on_master.wait(replicas, 100)) >= replicas:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"replicas of {master.port} not confirming after {timeout_s}s")
    finally:
        on_replica.close()
        on_master.close()


@dataclass
class SentinelServer:
    port: int
    proc: subprocess.Popen[bytes]
    master_name: str

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, decode_responses=True, socket_timeout=5)


@contextlib.contextmanager
def sentinel_server(
    master: RedisServer,
    *,
    master_name: str = "responder",
    down_after_ms: int = 1000,
    failover_timeout_ms: int = 3000,
) -> Iterator[SentinelServer]:
    """``redis-server --sentinel`` watching ``master`` alone (quorum 1), quick to act.

    Not quicker than 1 s: at 500 ms, the sentinel often found the master it had just
    promoted down before its link to it was up, and failed over again, and again."""
    with tempfile.TemporaryDirectory(prefix="responder-sentinel-") as tmp:
        port = free_port()
        conf = Path(tmp) / "sentinel.conf"  # sentinel rewrites its file: ours, in tmp
        conf.write_text(
            f"port {port}\n"
            "bind 127.0.0.1\n"
            "protected-mode no\n"
            f"dir {tmp}\n"
            f"sentinel monitor {master_name} 127.0.0.1 {master.port} 1\n"
            f"sentinel down-after-milliseconds {master_name} {down_after_ms}\n"
            f"sentinel failover-timeout {master_name} {failover_timeout_ms}\n"
            f"sentinel parallel-syncs {master_name} 2\n"
        )
        proc = subprocess.Popen(
            [require_binary("redis-server"), str(conf), "--sentinel"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_for_port(port, proc=proc)
            yield SentinelServer(port, proc, master_name)
        finally:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(10)


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


def wait_sentinel_sees_replicas(sentinel: SentinelServer, count: int) -> None:
    client = sentinel.client()
    deadline = time.monotonic() + 20
    try:
        while True:
            replicas = client.sentinel_slaves(sentinel.master_name)
            up = [r for r in replicas if not r["is_sdown"] and r.get("master-link-status") == "ok"]
            if len(up) >= count:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"sentinel sees {len(up)} replica(s) of {count}")
            time.sleep(0.1)
    finally:
        client.close()
