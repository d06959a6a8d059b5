"""pitwall_rt.web.metrics: Prometheus text format 0.0.4, written by hand."""

from __future__ import annotations

import re

import pytest

from pitwall_rt.web.metrics import Exposition, _escape, _labels, _number

# A sample line per the text format: name, optional {labels}, one space, value.
SAMPLE = re.compile(
    r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="(\\.|[^"\\\n])*",?)*\})? \S+$'
)


def test_metrics_escape_backslash_quote_and_newline() -> None:
    assert _escape('a\\b"c\nd') == 'a\\\\b\\"c\\nd'
    assert _escape("plain") == "plain"
    # Backslash first, so an escaped quote is not escaped twice.
    assert _escape('\\"') == '\\\\\\"'


def test_metrics_labels_are_sorted_quoted_and_escaped() -> None:
    assert _labels({}) == ""
    assert _labels({"source": "udp", "reason": 'bad "x"'}) == '{reason="bad \\"x\\"",source="udp"}'


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0, "0"),
        (12, "12"),
        (3.0, "3"),
        (2.5, "2.5"),
        (True, "1"),
        (False, "0"),
        (1e20, "100000000000000000000"),
    ],
)
def test_metrics_numbers_are_written_plainly(value: float, text: str) -> None:
    assert _number(value) == text


def test_metrics_render_gives_help_type_and_sample_lines() -> None:
    out = Exposition()
    out.counter(
        "pitwall_points_accepted_total",
        "Points accepted into the ring, by source.",
        [({"source": "udp"}, 10), ({"source": "http"}, 2)],
    )
    out.gauge("pitwall_ring_size", "Points held in the ring buffer.", 7)
    out.counter("pitwall_empty_total", "No samples yet.", [])
    text = out.render()
    assert text.endswith("\n") and not text.endswith("\n\n")
    assert text.splitlines() == [
        "# HELP pitwall_points_accepted_total Points accepted into the ring, by source.",
        "# TYPE pitwall_points_accepted_total counter",
        'pitwall_points_accepted_total{source="udp"} 10',
        'pitwall_points_accepted_total{source="http"} 2',
        "# HELP pitwall_ring_size Points held in the ring buffer.",
        "# TYPE pitwall_ring_size gauge",
        "pitwall_ring_size 7",
        "# HELP pitwall_empty_total No samples yet.",
        "# TYPE pitwall_empty_total counter",
    ]


def test_metrics_hostile_label_values_stay_on_one_line() -> None:
    out = Exposition()
    out.counter(
        "pitwall_points_rejected_total",
        "Rejected.",
        [({"source": "udp", "reason": 'evil"}\n fake_metric 1\\'}, 3)],
    )
    lines = out.render().splitlines()
    assert len(lines) == 3
    assert SAMPLE.match(lines[2]), lines[2]
    assert lines[2].endswith(" 3")


def test_metrics_empty_exposition_renders_a_newline() -> None:
    assert Exposition().render() == "\n"
