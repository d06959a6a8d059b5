"""Prometheus text exposition (format 0.0.4) of the server's counters.

Written by hand rather than with prometheus-client: the counters already
live in our stats objects, and this module only prints them. Label values are
escaped per the format (backslash, quote, newline).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

Sample = tuple[Mapping[str, str], float]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(labels: Mapping[str, str]) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{key}="{_escape(str(val))}"' for key, val in sorted(labels.items()))
    return "{" + inner + "}"


class Exposition:
    """Collects metric families and renders them in one text body."""

    def __init__(self) -> None:
        self._lines: list[str] = []

    def add(self, name: str, kind: str, help_text: str, samples: Iterable[Sample]) -> None:
        help_escaped = help_text.replace("\\", "\\\\").replace("\n", "\\n")
        self._lines.append(f"# HELP {name} {help_escaped}")
        self._lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            self._lines.append(f"{name}{_labels(labels)} {_number(value)}")

    def counter(self, name: str, help_text: str, samples: Iterable[Sample]) -> None:
        self.add(name, "counter", help_text, samples)

    def gauge(self, name: str, help_text: str, value: float) -> None:
        self.add(name, "gauge", help_text, [({}, value)])

    def render(self) -> str:
        return "\n".join(self._lines) + "\n"


def _number(value: float) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "+Inf" if value > 0 else "-Inf"
    if isinstance(value, int) or float(value).is_integer():
        return str(int(value))
    return repr(float(value))
