"""Run the real server as a subprocess from its command line, on free ports.

Timeouts come from one unit, ``UNIT_S``, scaled by PITWALL_TEST_TIME_SCALE so
a slow machine can raise them all at once; no test asserts how fast
something ran.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
UNIT_S = 1.0 * float(os.environ.get("PITWALL_TEST_TIME_SCALE", "1"))


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(predicate: Any, timeout_s: float, what: str, interval_s: float = 0.02) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s:.1f} s waiting for {what} (last: {last!r})")


class ServerProcess:
    """``python -m pitwall_rt`` with its own ports, data dir and log file."""

    def __init__(self, tmp: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.tmp = tmp
        self.port = free_port()
        self.udp_port = free_port(socket.SOCK_DGRAM)
        self.args = list(args)
        self.env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = tmp / f"server-{self.port}.log"

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/realtime"

    def start(self, timeout_s: float = 20 * UNIT_S) -> ServerProcess:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
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
            "--data-dir",
            str(self.tmp / "data"),
            *self.args,
        ]
        self._log = self.log_path.open("wb")
        # Its own process group, so stop() can also reap the compute pool.
        self.proc = subprocess.Popen(
            cmd,
            cwd=REPO,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_for(self._ready, timeout_s, f"server on port {self.port} (log {self.log_path})")
        except BaseException:
            # The caller never gets the server to stop: a server that never
            # answered would otherwise outlive the test run.
            self.stop()
            raise
        return self

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.log()}")
        try:
            return self.get("/api/health")[0] == 200
        except OSError:
            return False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 10 * UNIT_S) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # anything the server left behind
        self._log.close()
        return self.proc.returncode

    # -- HTTP helpers ----------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        req = urllib.request.Request(
            self.base + path, data=body, method=method, headers=headers or {}
        )
        try:
            with urllib.request.urlopen(req, timeout=10 * UNIT_S) as resp:
                status, raw, ctype = resp.status, resp.read(), resp.headers.get("Content-Type", "")
        except urllib.error.HTTPError as err:
            status, raw, ctype = err.code, err.read(), err.headers.get("Content-Type", "")
        if "json" in ctype:
            return status, json.loads(raw)
        return status, raw.decode(errors="replace")

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        return self.request("GET", path, headers=headers)

    def post_json(
        self, path: str, data: Any, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        return self.request(
            "POST",
            path,
            json.dumps(data).encode(),
            {"Content-Type": "application/json", **(headers or {})},
        )

    def health(self) -> dict[str, Any]:
        status, body = self.get("/api/health")
        assert status == 200, body
        return body

    def send_udp(self, *datagrams: bytes) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for data in datagrams:
                sock.sendto(data, ("127.0.0.1", self.udp_port))

    def rss_bytes(self) -> int:
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0


@contextlib.contextmanager
def running(tmp: Path, *args: str, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    proc = ServerProcess(tmp, *args, env=env).start()
    try:
        yield proc
    finally:
        proc.stop()
