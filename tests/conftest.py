"""Shared test fixtures: the time unit, and a real server process on free ports."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .serverproc import ServerProcess


@pytest.fixture
def server(tmp_path) -> Iterator[ServerProcess]:
    """A real ``pitwall-rt`` subprocess on random free ports (default settings)."""
    proc = ServerProcess(tmp_path).start()
    try:
        yield proc
    finally:
        proc.stop()
