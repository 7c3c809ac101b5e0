"""How long a CLI command takes from the shell, start-up included.

Runs ``responder incidents list --help`` and ``responder incidents list`` (against a port
nothing listens on: the command starts, fails to connect and exits, so the figure is the
start-up and not a server's answer) as separate processes, several times each, and prints
the median and the best wall time of each. The target is under 300 ms: every command but
``serve`` imports what it needs when it runs (``responder/cli.py``).

    .venv/bin/python bench/cli_startup.py [--runs 10]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _time(args: list[str], runs: int) -> list[float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RESPONDER_")}
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "responder", *args],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
            timeout=60,
        )
        timings.append(time.perf_counter() - started)
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="runs of each command")
    runs = parser.parse_args().runs
    url = f"http://127.0.0.1:{_closed_port()}"
    for args in (["incidents", "list", "--help"], ["incidents", "list", "--url", url]):
        timings = _time(args, runs)
        name = "responder " + " ".join(a for a in args if not a.startswith("http"))
        print(
            f"{name:<38} median {statistics.median(timings) * 1000:6.0f} ms  "
            f"best {min(timings) * 1000:6.0f} ms  ({runs} runs; target < 300 ms)"
        )


if __name__ == "__main__":
    main()
