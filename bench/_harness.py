"""Shared bench plumbing: start the server, pace a UDP sender, print tables.

Benchmarks measure; they never assert. Each prints a Markdown table with the
machine it ran on, so the README can carry the figures as measured.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing as mp
import os
import platform
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def machine() -> str:
    cpu = "unknown cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()}"


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """A pitwall-rt subprocess on free ports, with a health reader."""

    def __init__(self, *args: str) -> None:
        self.port = free_port()
        self.udp_port = free_port(socket.SOCK_DGRAM)
        # Recordings go to a directory of the run's own unless one is given,
        # so benches don't fill the repository's ./data.
        self._data_dir: tempfile.TemporaryDirectory[str] | None = None
        if "--data-dir" not in args:
            self._data_dir = tempfile.TemporaryDirectory(prefix="pitwall-bench-")
            args = (*args, "--data-dir", self._data_dir.name)
        cmd = [
            sys.executable,
            "-m",
            "pitwall_rt",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--udp-port",
            str(self.udp_port),
            "--log-level",
            "warning",
            *args,
        ]
        self.proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                self.health()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("server did not start")

    def health(self) -> dict[str, Any]:
        url = f"http://127.0.0.1:{self.port}/api/health"
        with urllib.request.urlopen(url, timeout=10) as resp:
            return json.loads(resp.read())

    def accepted(self, source: str) -> int:
        return int(self.health()["accepted"].get(source, 0))

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        if self._data_dir is not None:
            self._data_dir.cleanup()


def _descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        path = Path(f"/proc/{current}/task/{current}/children")
        with contextlib.suppress(OSError):
            todo.extend(int(c) for c in path.read_text().split())
    return out


def _role(pid: int, root: int) -> str:
    if pid == root:
        return "server (event loop)"
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "other"
    if b"multiprocessing.spawn" in cmdline:
        return "parse processes"
    # The forkserver and the pool workers it forks share one command line;
    # the forkserver itself idles, so its seconds are the workers'.
    return "compute workers" if b"forkserver" in cmdline else "other"


def cpu_seconds(root: int) -> dict[str, float]:
    """CPU seconds (user + system) so far of a process tree, by role.

    Linux only. CPU per point is steadier than a throughput figure on a
    shared machine: it says what each stage costs, whatever else runs."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for pid in _descendants(root):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        role = _role(pid, root)
        out[role] = out.get(role, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return out


def telemetry_point(rng: random.Random, i: int, cars: int = 20) -> dict[str, Any]:
    """A varied, valid point (varied so parsing is not flattered by repetition)."""
    return {
        "meta_time": 1_757_184_000.0 + i * 0.02,
        "track": "barber",
        "chassis": f"GR86-{i % cars:03d}",
        "lap": 1 + i // 5000,
        "lapdist_m": round(rng.uniform(0, 3674), 2),
        "speed_kmh": round(rng.uniform(40, 220), 2),
        "accx_can": round(rng.uniform(-1.5, 0.6), 3),
        "accy_can": round(rng.uniform(-1.6, 1.6), 3),
        "Steering_Angle": round(rng.uniform(-90, 90), 1),
        "pbrake_f": round(rng.uniform(0, 120), 1),
        "pbrake_r": round(rng.uniform(0, 60), 1),
        "rpm": round(rng.uniform(2500, 7400)),
        "throttle_pct": round(rng.uniform(0, 100), 1),
        "gear": rng.randint(1, 6),
    }


def datagrams(points_per_datagram: int, count: int = 2000, seed: int = 1) -> list[bytes]:
    rng = random.Random(seed)
    out = []
    for d in range(count):
        pts = [
            telemetry_point(rng, d * points_per_datagram + k) for k in range(points_per_datagram)
        ]
        body = pts[0] if points_per_datagram == 1 else pts
        out.append(json.dumps(body, separators=(",", ":")).encode())
    return out


def _pace(port: int, payloads: list[bytes], rate: float, seconds: float) -> int:
    """Send ``rate`` datagrams/s for ``seconds`` in 1 ms bursts, sleeping in
    between, so the sender does not spin on a core the receiver needs (the
    machine has two)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.connect(("127.0.0.1", port))
    send = sock.send
    n_payloads = len(payloads)
    sent = 0
    start = time.perf_counter()
    end = start + seconds
    while (now := time.perf_counter()) < end:
        due = int((now - start) * rate)
        while sent < due:
            try:
                send(payloads[sent % n_payloads])
            except BlockingIOError:
                continue
            sent += 1
        time.sleep(0.001)
    return sent


def send_paced(port: int, payloads: list[bytes], rate: float, seconds: float) -> tuple[int, float]:
    """Send at ``rate`` datagrams/s from another process; returns (sent, achieved rate)."""
    ctx = mp.get_context("fork")
    sent = ctx.Value("q", 0)
    start = time.perf_counter()
    proc = ctx.Process(target=_pace_entry, args=(port, payloads, rate, seconds, sent))
    proc.start()
    proc.join()
    elapsed = max(time.perf_counter() - start, seconds)
    return int(sent.value), sent.value / elapsed


def _pace_entry(port: int, payloads: list[bytes], rate: float, seconds: float, sent: Any) -> None:
    sent.value = _pace(port, payloads, rate, seconds)


def table(title: str, header: list[str], rows: list[list[Any]]) -> str:
    lines = [f"### {title}", "", f"Machine: {machine()}", ""]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    for row in rows:
        lines.append("| " + " | ".join(str(c) for c in row) + " |")
    return "\n".join(lines) + "\n"
