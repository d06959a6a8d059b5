"""Start-up work that keeps one-off costs off the event loop once serving."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import sys
import numpy as np
from pitwall_rt.server import warm_lazy_imports
warm_lazy_imports()
before = set(sys.modules)
ids = np.array([3, 1, 3], dtype=np.int32)
np.unique(ids)
np.unique(ids[::-1], return_index=True)
print(sorted(set(sys.modules) - before))
"""


def test_warm_up_leaves_nothing_for_the_ticks_np_unique_to_import() -> None:
    # A fresh interpreter: this test process has long since imported everything.
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"


def test_tune_gil_shortens_the_switch_interval_to_1_ms() -> None:
    from pitwall_rt.server import tune_gil

    before = sys.getswitchinterval()
    try:
        sys.setswitchinterval(0.005)
        tune_gil()
        assert sys.getswitchinterval() == 0.001
    finally:
        sys.setswitchinterval(before)
