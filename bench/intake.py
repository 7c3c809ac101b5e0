"""Intake benchmark: the webhook service against a bare aiohttp server, under the same load.

Run from the project root:

    .venv/bin/python bench/intake.py                 # 20,000 requests per target
    .venv/bin/python bench/intake.py --requests 50000 --connections 64 --json

It starts, each as a subprocess on 127.0.0.1:

* ``redis-server`` on a free port in a temporary directory, unless ``REDIS_URL`` is set;
  either way the run writes only keys under a random ``{bench-...}`` prefix and deletes
  just those at the end (it never flushes anything). ``--durability replica`` adds a
  replica of it, ``--durability fsync`` runs it with ``appendonly yes`` and
  ``appendfsync always`` (both need the benchmark's own Redis);
* the service, ``python -m responder serve`` with the Redis backend (its default 4 workers,
  log level WARNING; other ``RESPONDER_*`` variables of the shell are not passed on);
* ``bench/bare_server.py``: the same HTTP stack (aiohttp on uvloop) doing nothing but
  ``orjson.loads`` of the body: the ceiling the service is measured against.

Load comes from ``wrk`` (Debian package ``wrk``) running ``bench/intake_load.lua``:
Alertmanager v4 webhooks with one alert each, 90% of them one of 1,000 hot alerts (repeats
once seen), 10% a new alert every time (queued). After an unmeasured warm-up against both
targets, and once the service's queue is drained, each of ``--rounds`` rounds (default 5)
sends ``--requests`` requests over ``--connections`` connections to both, one after the
other, alternating which goes first; the service's queue is drained again after its run.
Printed: requests/s and latency of each run, each round's ratio, the median round's ratio
and whether the targets are met on it (ratio >= 0.4, service p99 <= 25 ms; no errors in
any run), and the service's dedupe outcomes, its work queue after each run and the
batches its workers made of that run's signals, from its ``/metrics``. Rounds, because
this machine's speed drifts by tens of percent from one minute to the next: one pair of
runs can flatter or wrong either side, and a round in a run often differs from the next
by 0.1 in ratio: five rounds give a steadier median than three.

The numbers are informative: the exit status is non-zero only when something failed to
start or wrk failed, never because a target was missed.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

import redis
from prometheus_client.parser import text_string_to_metric_families

BENCH_DIR = Path(__file__).resolve().parent
LOAD_SCRIPT = BENCH_DIR / "intake_load.lua"
BARE_SERVER = BENCH_DIR / "bare_server.py"
INTAKE_PATH = "/v1/webhooks/alertmanager"
HOST = "127.0.0.1"

# Markers shared with intake_load.lua.
THREAD_DONE = "intake-load: thread done"
RESULT_PREFIX = "intake-load-result: "

# The targets this benchmark checks (printed, never enforced through the exit status).
MIN_RATIO = 0.4
MAX_SERVICE_P99_MS = 25.0

START_TIMEOUT_S = 30.0
DRAIN_TIMEOUT_S = 120.0


class BenchError(Exception):
    """Something the benchmark needs failed: it stops with this message and status 1."""


# ------------------------------------------------------------------------------ processes


@dataclass
class Child:
    """A subprocess of ours, its output going to a log file for post-mortems."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        if not self.alive():
            return
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


def spawn(name: str, cmd: list[str], workdir: Path, *, env: dict[str, str] | None = None) -> Child:
    log = workdir / f"{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env
        )
    return Child(name, proc, log)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def wait_ready(child: Child, ready: Callable[[], bool], timeout_s: float = START_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not child.alive():
            raise BenchError(
                f"{child.name} exited with status {child.proc.returncode} while starting:\n"
                f"{child.log_tail()}"
            )
        if ready():
            return
        time.sleep(0.05)
    raise BenchError(f"{child.name} not ready after {timeout_s:.0f}s:\n{child.log_tail()}")


def http_status(
    url: str, *, body: bytes | None = None, headers: dict[str, str] | None = None
) -> int:
    """Status of a GET (or a POST when ``body`` is given); 0 when nothing answers."""
    request = urllib.request.Request(url, data=body, headers=headers or {})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=2) as response:  # noqa: S310
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def http_text(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310
            return str(response.read().decode("utf-8"))
    except OSError as exc:
        raise BenchError(f"GET {url} failed: {exc}") from None


def redacted(url: str) -> str:
    parts = urlsplit(url)
    if not parts.password:
        return url
    return parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@")).geturl()


def redis_answers(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


# The Redis options each --durability needs (RESPONDER_INTAKE_DURABILITY); later options
# win over the defaults of start_redis.
DURABILITY_REDIS_OPTIONS = {
    "write": [],
    # no 5 s wait for more replicas before the replica's first (diskless) sync
    "replica": ["--repl-diskless-sync-delay", "0"],
    "fsync": ["--appendonly", "yes", "--appendfsync", "always"],
}


def start_redis(workdir: Path, *extra: str, name: str = "redis-server") -> tuple[str, Child]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise BenchError(
            "redis-server is not installed (Debian package redis-server); or set REDIS_URL"
        )
    port = free_port()
    data = workdir / name  # each server its own directory (an fsync'd AOF is written there)
    data.mkdir()
    cmd = [
        binary,
        "--port", str(port),
        "--bind", HOST,
        "--save", "",
        "--appendonly", "no",
        "--dir", str(data),
        *extra,
    ]  # fmt: skip
    child = spawn(name, cmd, workdir)
    url = f"redis://{HOST}:{port}/0"
    wait_ready(child, lambda: redis_answers(url))
    return url, child


def start_replica(master_url: str, workdir: Path) -> Child:
    """A replica of ``master_url``, returned once it confirms the master's writes (WAIT)."""
    master = urlsplit(master_url)
    _, child = start_redis(
        workdir, "--replicaof", str(master.hostname), str(master.port), name="redis-replica"
    )
    on_master = redis.Redis.from_url(master_url, socket_timeout=5)
    try:

        def confirming() -> bool:
            on_master.publish("bench:replica-probe", "")  # a write of no key
            return int(on_master.wait(1, 100)) >= 1

        wait_ready(child, confirming)
    finally:
        on_master.close()
    return child


def start_service(
    redis_url: str,
    prefix: str,
    workdir: Path,
    workers: int | None = None,
    durability: str = "write",
) -> tuple[str, Child]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RESPONDER_")}
    env |= {
        "RESPONDER_REDIS_URL": redis_url,
        "RESPONDER_REDIS_PREFIX": prefix,
        "RESPONDER_LOG_LEVEL": "WARNING",
        "RESPONDER_INTAKE_DURABILITY": durability,
        # the storm's groups each open an incident, as before the cap: the workers' cost per
        # signal stays comparable across versions
        "RESPONDER_MAX_NEW_INCIDENTS_PER_MINUTE": "0",
    }
    if workers is not None:
        env["RESPONDER_WORKERS"] = str(workers)
    child = spawn(
        "service",
        [sys.executable, "-m", "responder", "serve", "--host", HOST, "--port", str(port)],
        workdir,
        env=env,
    )
    base = f"http://{HOST}:{port}"
    wait_ready(child, lambda: http_status(base + "/readyz") == 200)
    return base, child


def start_bare(workdir: Path) -> tuple[str, Child]:
    port = free_port()
    child = spawn(
        "bare-server",
        [sys.executable, str(BARE_SERVER), "--host", HOST, "--port", str(port)],
        workdir,
    )
    base = f"http://{HOST}:{port}"
    probe = {"Content-Type": "application/json"}
    wait_ready(child, lambda: http_status(base + INTAKE_PATH, body=b"{}", headers=probe) == 200)
    return base, child


def cleanup_keys(redis_url: str, prefix: str) -> None:
    try:
        deleted = delete_prefixed_keys(redis_url, prefix)
    except redis.RedisError as exc:
        print(f"warning: could not delete the keys under {{{prefix}}}: {exc}", file=sys.stderr)
    else:
        print(f"deleted {deleted} key(s) under {{{prefix}}}")


def delete_prefixed_keys(redis_url: str, prefix: str) -> int:
    """Delete the keys under ``{prefix}`` (and nothing else); how many there were."""
    client = redis.Redis.from_url(redis_url)
    deleted = 0
    try:
        batch: list[bytes] = []
        for key in client.scan_iter(match="{" + prefix + "}:*", count=1000):
            batch.append(key)
            if len(batch) >= 500:
                deleted += int(client.delete(*batch))
                batch.clear()
        if batch:
            deleted += int(client.delete(*batch))
    finally:
        client.close()
    return deleted


# ----------------------------------------------------------------------------------- load


@dataclass
class LoadResult:
    target: str
    requests: int
    seconds: float
    requests_per_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float
    non_2xx: int
    socket_errors: dict[str, int]
    stopped_by_duration_bound: bool

    @property
    def errors(self) -> int:
        return self.non_2xx + sum(self.socket_errors.values())


@dataclass
class WrkSettings:
    connections: int
    threads: int
    max_duration_s: int
    nonces: Iterator[int] = field(
        default_factory=lambda: itertools.count(secrets.randbelow(3000) + 1)
    )


def run_wrk(target: str, url: str, requests: int, wrk: WrkSettings, workdir: Path) -> LoadResult:
    """``requests`` requests from wrk; stopped (SIGINT) as soon as every thread had its share,
    rather than when wrk's -d bound runs out."""
    binary = shutil.which("wrk")
    if binary is None:
        raise BenchError("wrk is not installed (Debian package wrk)")
    threads = max(1, min(wrk.threads, wrk.connections, requests))
    cmd = [
        binary,
        "-t", str(threads),
        "-c", str(wrk.connections),
        "-d", f"{wrk.max_duration_s}s",
        "--timeout", "5s",
        "--latency",
        "-s", str(LOAD_SCRIPT),
        url,
        "--", str(requests), str(threads), str(next(wrk.nonces) % 4095 + 1),
    ]  # fmt: skip
    stdout_path = workdir / f"wrk-{target}.out"
    other_stderr: list[str] = []
    finished_threads = 0
    with stdout_path.open("wb") as stdout:
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=stdout, stderr=subprocess.PIPE, text=True
        )
    try:
        stderr: IO[str] | None = proc.stderr
        assert stderr is not None
        for line in stderr:  # ends when wrk exits, at the latest after its -d bound
            # two threads finishing at once can write their markers on one line
            done = line.count(THREAD_DONE)
            if line.replace(THREAD_DONE, "").strip():
                other_stderr.append(line.rstrip("\n"))
            if not done:
                continue
            finished_threads += done
            if finished_threads == threads:
                _interrupt_until_exit(proc)
        rc = proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    output = stdout_path.read_text(encoding="utf-8", errors="replace")
    if rc != 0:
        raise BenchError(f"wrk exited with status {rc}:\n{output}\n" + "\n".join(other_stderr))
    doc = next(
        (
            json.loads(line.removeprefix(RESULT_PREFIX))
            for line in output.splitlines()
            if line.startswith(RESULT_PREFIX)
        ),
        None,
    )
    if doc is None or other_stderr:
        raise BenchError(
            f"wrk gave no result or complained (status {rc}):\n{output}\n" + "\n".join(other_stderr)
        )
    latency = {k: float(v) / 1000 for k, v in doc["latency_us"].items()}
    seconds = float(doc["window_s"]) or float(doc["wrk_duration_s"])
    count = int(doc["requests"])
    return LoadResult(
        target=target,
        requests=count,
        seconds=seconds,
        requests_per_s=count / seconds if seconds > 0 else 0.0,
        p50_ms=latency["p50"],
        p90_ms=latency["p90"],
        p99_ms=latency["p99"],
        p999_ms=latency["p999"],
        max_ms=latency["max"],
        non_2xx=int(doc["non_2xx"]),
        socket_errors={k: int(v) for k, v in doc["socket_errors"].items()},
        stopped_by_duration_bound=finished_threads < threads,
    )


def _interrupt_until_exit(proc: subprocess.Popen[str]) -> None:
    """SIGINT ends wrk's sleep through -d; repeated in case it came before wrk's handler."""
    for _ in range(20):
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(0.5)
        except subprocess.TimeoutExpired:
            continue
        return


# -------------------------------------------------------------------------------- metrics


def service_metrics(base_url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of the service's /metrics, keyed by name and labels."""
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(http_text(base_url + "/metrics")):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = float(sample.value)
    return samples


def signal_outcomes(base_url: str) -> dict[str, int]:
    """responder_signals_total of the alertmanager source, by outcome."""
    counts = {"new": 0, "changed": 0, "repeat": 0}
    for (name, labels), value in service_metrics(base_url).items():
        lab = dict(labels)
        if name == "responder_signals_total" and lab.get("source") == "alertmanager":
            counts[lab["outcome"]] = counts.get(lab["outcome"], 0) + int(value)
    return counts


def queue_backlog(base_url: str) -> tuple[int, int]:
    """(depth, pending) of the service's work queue."""
    samples = service_metrics(base_url)
    depth = samples.get(("responder_queue_depth", frozenset()), 0.0)
    pending = samples.get(("responder_queue_pending", frozenset()), 0.0)
    return int(depth), int(pending)


def worker_batches(base_url: str) -> tuple[int, int]:
    """(batches, entries) the service's workers handled since it started."""
    samples = service_metrics(base_url)
    count = samples.get(("responder_worker_batch_entries_count", frozenset()), 0.0)
    entries = samples.get(("responder_worker_batch_entries_sum", frozenset()), 0.0)
    return int(count), int(entries)


def wait_drained(base_url: str, timeout_s: float = DRAIN_TIMEOUT_S) -> float | None:
    """Seconds until the workers emptied the queue, or None if they did not in time."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if queue_backlog(base_url) == (0, 0):
            return time.monotonic() - started
        time.sleep(0.2)
    return None


# --------------------------------------------------------------------------------- report


@dataclass
class Round:
    """One measurement of both targets, back to back, under the same load."""

    service: LoadResult
    bare: LoadResult
    signals: dict[str, int]  # the service's dedupe outcomes during its run
    backlog_after_run: tuple[int, int]
    drain_s: float | None
    batches: tuple[int, int]  # (batches, entries) the workers handled, run and drain

    @property
    def mean_batch(self) -> float:
        return self.batches[1] / self.batches[0] if self.batches[0] else 0.0

    @property
    def ratio(self) -> float:
        return (
            self.service.requests_per_s / self.bare.requests_per_s
            if self.bare.requests_per_s
            else 0.0
        )

    def to_json(self) -> dict[str, Any]:
        def run(result: LoadResult) -> dict[str, Any]:
            return asdict(result) | {"errors": result.errors}

        return {
            "service": run(self.service),
            "bare": run(self.bare),
            "ratio": self.ratio,
            "signals": self.signals,
            "queue_after_run": {
                "depth": self.backlog_after_run[0],
                "pending": self.backlog_after_run[1],
            },
            "queue_drain_s": self.drain_s,
            "worker_batches": {"count": self.batches[0], "entries": self.batches[1]},
        }


@dataclass
class Report:
    requests: int
    connections: int
    threads: int
    workers: str
    rounds: list[Round]
    signals_since_start: dict[str, int]
    durability: str = "write"  # the service's RESPONDER_INTAKE_DURABILITY

    @property
    def median(self) -> Round:
        """The round of median ratio: the one shown and checked against the targets."""
        ranked = sorted(self.rounds, key=lambda r: r.ratio)
        return ranked[(len(ranked) - 1) // 2]

    def targets(self) -> dict[str, bool]:
        median = self.median
        return {
            f"ratio >= {MIN_RATIO}": median.ratio >= MIN_RATIO,
            f"service p99 <= {MAX_SERVICE_P99_MS:g} ms": median.service.p99_ms
            <= MAX_SERVICE_P99_MS,
            "zero errors": all(r.service.errors == 0 and r.bare.errors == 0 for r in self.rounds),
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "connections": self.connections,
            "wrk_threads": self.threads,
            "service_workers": self.workers,
            "intake_durability": self.durability,
            "rounds": [r.to_json() for r in self.rounds],
            "median_round": self.rounds.index(self.median),
            "ratio": self.median.ratio,
            "targets": self.targets(),
            "targets_met": all(self.targets().values()),
            "signals_since_start": self.signals_since_start,
        }

    def show(self) -> None:
        print()
        header = ("round", "target", "requests", "requests/s", "p50 ms", "p99 ms", "errors")
        print("{:<6} {:<8} {:>9} {:>11} {:>8} {:>8} {:>7}  {}".format(*header, "ratio"))
        for n, rnd in enumerate(self.rounds, 1):
            for r in (rnd.service, rnd.bare):
                ratio = f"{rnd.ratio:.3f}" if r is rnd.service else ""
                print(
                    f"{n:<6} {r.target:<8} {r.requests:>9} {r.requests_per_s:>11.1f} "
                    f"{r.p50_ms:>8.2f} {r.p99_ms:>8.2f} {r.errors:>7}  {ratio}"
                )
                if r.errors:
                    print(f"  {r.target} errors: non-2xx {r.non_2xx}, socket {r.socket_errors}")
                if r.stopped_by_duration_bound:
                    print(f"  {r.target}: stopped by wrk's -d bound before all requests were made")
        median = self.median
        print()
        print(
            f"service/bare requests/s: {median.ratio:.3f} (median of "
            f"{len(self.rounds)} round(s): {', '.join(f'{r.ratio:.3f}' for r in self.rounds)}); "
            f"service p99 in that round {median.service.p99_ms:.2f} ms"
        )
        verdicts = ", ".join(
            f"{name}: {'met' if ok else 'MISSED'}" for name, ok in self.targets().items()
        )
        overall = "all targets met" if all(self.targets().values()) else "targets NOT met"
        print(f"{overall} ({verdicts})")
        print()
        print(
            "signals seen by the service in each measured run (responder_signals_total; "
            "in-flight requests when wrk stopped included), and its work queue right after:"
        )
        for n, rnd in enumerate(self.rounds, 1):
            total = sum(rnd.signals.values())
            shares = ", ".join(
                f"{k} {v} ({100 * v / total:.1f}%)" if total else f"{k} {v}"
                for k, v in rnd.signals.items()
            )
            depth, pending = rnd.backlog_after_run
            if self.workers == "0":
                drained = "no workers"
            elif rnd.drain_s is None:
                drained = "not drained in time"
            else:
                drained = (
                    f"drained in {rnd.drain_s:.1f}s; {rnd.batches[0]} worker batches "
                    f"of {rnd.mean_batch:.0f} entries on average"
                )
            print(f"  round {n}: {shares}; queue {depth} queued, {pending} in progress, {drained}")
        since = ", ".join(f"{k} {v}" for k, v in self.signals_since_start.items())
        print(f"  (since start, warm-up included: {since})")


# ----------------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Webhook intake throughput and latency: the service against a bare server."
    )
    parser.add_argument("--requests", type=int, default=20_000, help="measured requests per target")
    parser.add_argument("--connections", type=int, default=32, help="concurrent connections")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--warmup", type=int, default=2_000, help="unmeasured requests per target")
    parser.add_argument(
        "--max-duration", type=int, default=300, metavar="S", help="wrk -d safety bound, seconds"
    )
    parser.add_argument(
        "--rounds", type=int, default=5,
        help="measurements of both targets, alternating which goes first; the median counts",
    )  # fmt: skip
    parser.add_argument("--json", action="store_true", help="also print a JSON summary")
    parser.add_argument(
        "--workers", type=int, default=None, metavar="N",
        help="worker tasks in the service (default: the service's default); 0 measures intake "
        "alone, for diagnosis",
    )  # fmt: skip
    parser.add_argument(
        "--durability", choices=sorted(DURABILITY_REDIS_OPTIONS), default="write",
        help="RESPONDER_INTAKE_DURABILITY of the service; the benchmark starts the Redis it "
        "needs: a replica for replica, appendonly with appendfsync always for fsync",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if min(args.requests, args.connections, args.threads, args.rounds) < 1 or args.warmup < 0:
        parser.error(
            "--requests, --connections, --threads and --rounds must be positive, --warmup >= 0"
        )
    return args


def benchmark(args: argparse.Namespace, stack: contextlib.ExitStack) -> Report:
    workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="responder-bench-")))
    redis_url = os.environ.get("REDIS_URL", "")
    if redis_url and args.durability != "write":
        raise BenchError(
            f"--durability {args.durability} starts the Redis it needs: unset REDIS_URL"
        )
    if redis_url:
        if not redis_answers(redis_url):
            raise BenchError("REDIS_URL is set but Redis does not answer PING there")
        where = "REDIS_URL"
    else:
        redis_url, redis_child = start_redis(workdir, *DURABILITY_REDIS_OPTIONS[args.durability])
        stack.callback(redis_child.stop)
        where = "own redis-server"
        if args.durability == "replica":
            stack.callback(start_replica(redis_url, workdir).stop)
            where += " and its replica"
        elif args.durability == "fsync":
            where += ", appendonly yes, appendfsync always"
    prefix = f"bench-{secrets.token_hex(4)}"
    stack.callback(cleanup_keys, redis_url, prefix)

    service_url, service = start_service(redis_url, prefix, workdir, args.workers, args.durability)
    stack.callback(service.stop)  # stopped before the keys go: its workers write keys
    bare_url, bare = start_bare(workdir)
    stack.callback(bare.stop)
    threads = min(args.threads, args.connections)
    wrk = WrkSettings(
        connections=args.connections, threads=threads, max_duration_s=args.max_duration
    )
    print(
        f"intake benchmark: {args.requests} requests per target over {args.connections} "
        f"connections ({threads} wrk threads); 90% repeat one of 1000 alerts, 10% new"
    )
    print(f"redis: {redacted(redis_url)} ({where}), key prefix {{{prefix}}}")
    print(f"intake durability: {args.durability}")
    print(f"service: {service_url}  bare server: {bare_url}")

    service_intake, bare_intake = service_url + INTAKE_PATH, bare_url + INTAKE_PATH
    if args.warmup:
        print(f"warm-up: {args.warmup} requests each (not measured)")
        for target, url in (("service", service_intake), ("bare", bare_intake)):
            warm = run_wrk(f"warmup-{target}", url, args.warmup, wrk, workdir)
            if warm.errors:
                print(f"  warm-up {target}: {warm.errors} errors")
    if args.workers != 0 and wait_drained(service_url) is None:
        print("warning: the service's queue did not drain after the warm-up", file=sys.stderr)

    rounds = []
    for n in range(1, args.rounds + 1):
        # alternate which target goes first: a machine whose speed drifts during the run
        # then favours neither
        order = ("bare", "service") if n % 2 else ("service", "bare")
        results: dict[str, LoadResult] = {}
        for target in order:
            print(f"round {n}/{args.rounds}: measuring {target}...")
            if target == "bare":
                results["bare"] = run_wrk("bare", bare_intake, args.requests, wrk, workdir)
                continue
            before = signal_outcomes(service_url)
            batches_before = worker_batches(service_url)
            results["service"] = run_wrk("service", service_intake, args.requests, wrk, workdir)
            after = signal_outcomes(service_url)
            signals = {k: after[k] - before.get(k, 0) for k in after}
            backlog = queue_backlog(service_url)
            # the next run starts from an empty queue, as the first did
            drain_s = wait_drained(service_url) if args.workers != 0 else None
            batches_after = worker_batches(service_url)
            batches = (
                batches_after[0] - batches_before[0],
                batches_after[1] - batches_before[1],
            )
        for child in (service, bare):
            if not child.alive():
                raise BenchError(f"{child.name} died during the run:\n{child.log_tail()}")
        rounds.append(
            Round(results["service"], results["bare"], signals, backlog, drain_s, batches)
        )
    return Report(
        requests=args.requests,
        connections=args.connections,
        threads=threads,
        workers="default" if args.workers is None else str(args.workers),
        rounds=rounds,
        signals_since_start=signal_outcomes(service_url),
        durability=args.durability,
    )


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds through the clean-up, unlike the default action


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)  # progress lines show as they happen
    try:
        with contextlib.ExitStack() as stack:
            report = benchmark(args, stack)
            report.show()
            if args.json:
                print(json.dumps(report.to_json(), indent=2))
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
