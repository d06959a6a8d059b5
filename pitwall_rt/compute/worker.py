"""Pool worker start-up: load the model, yield the CPU, and never outlive the server.

Workers are forked by the forkserver, not by the server, so when the server
dies by SIGKILL nothing tells them: they would sit idle forever holding the
model's memory. A daemon thread checks once a second that the server
process still exists and exits the worker when it doesn't.

With ``WORKER_PRIORITY=idle`` (the default) a worker runs under Linux's
``SCHED_IDLE``: it gets only CPU time no other thread wants, and the kernel
preempts it the moment the event loop (or the parse process) wakes. On two
cores a split tick keeps both busy, and the loop then waited for a core:
in bench/e2e.py the loop's wait fell by about half (BATCH_MS=50: 190 to
300 ms per 10 s against 480 to 690) and stalls over 5 ms from up to 7 per
workload to at most 1, at a cost of 0 to 2 ms on the tick's median (the
README has the runs). Lowering the nice
value instead (19, with ``SCHED_BATCH``) cut the wait less and the stalls
not at all, since only ``SCHED_IDLE`` is always preempted on wake-up. The
price is that under a sustained overload of every core compute waits:
ticks then merge, and rows past the ring are counted lost in health.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time

from ..model import infer

log = logging.getLogger(__name__)

CHECK_S = 1.0


def _server_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _watch(server_pid: int) -> None:
    while _server_alive(server_pid):
        time.sleep(CHECK_S)
    os._exit(0)


def yield_cpu() -> bool:
    """Put this process under ``SCHED_IDLE`` where the platform has it; False where not."""
    idle = getattr(os, "SCHED_IDLE", None)
    if idle is None:
        return False
    try:
        os.sched_setscheduler(0, idle, os.sched_param(0))
    except OSError:
        return False
    return True


def init_worker(server_pid: int, priority: str = "normal") -> None:
    """ProcessPoolExecutor initializer (runs once in each worker).

    Ctrl-C in a terminal signals every process in the group; the server
    shuts the pool down itself, so a worker ignores it rather than die
    with a traceback mid-job."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if priority == "idle" and not yield_cpu():
        log.warning("WORKER_PRIORITY=idle: no SCHED_IDLE here; compute runs at normal priority")
    threading.Thread(target=_watch, args=(server_pid,), name="server-watch", daemon=True).start()
    infer.init_worker()
