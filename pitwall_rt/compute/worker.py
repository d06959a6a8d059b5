"""Pool worker start-up: load the model, and never outlive the server.

Workers are forked by the forkserver, not by the server, so when the server
dies by SIGKILL nothing tells them: they would sit idle forever holding the
model's memory. A daemon thread checks once a second that the server
process still exists and exits the worker when it doesn't.
"""

from __future__ import annotations

import os
import signal
import threading
import time

from ..model import infer

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


def init_worker(server_pid: int) -> None:
    """ProcessPoolExecutor initializer (runs once in each worker).

    Ctrl-C in a terminal signals every process in the group; the server
    shuts the pool down itself, so a worker ignores it rather than die
    with a traceback mid-job."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_watch, args=(server_pid,), name="server-watch", daemon=True).start()
    infer.init_worker()
