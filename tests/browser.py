"""Headless Chromium for the dashboard's end-to-end tests.

Debian's chromium (``apt-get install -y chromium``) driven by Playwright's
sync API through its ``executable_path``, so no browser download is needed.
``PITWALL_CHROMIUM`` points at another binary. Also: a console recorder for
"no errors" checks, and a server restart on the same port for reconnect tests.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, ConsoleMessage, Page, Playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from .serverproc import REPO, UNIT_S, ServerProcess

CHROMIUM = os.environ.get("PITWALL_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = REPO / "artifacts"
VIEWPORT = {"width": 1600, "height": 1000}
# Playwright takes milliseconds; every wait derives from the shared test unit.
UNIT_MS = 1000.0 * UNIT_S


def launch(playwright: Playwright) -> Browser:
    """Start the system Chromium headless; fails with the install hint when it is missing."""
    if not Path(CHROMIUM).exists():
        raise AssertionError(
            f"{CHROMIUM} not found: install Debian's chromium (apt-get install -y chromium) "
            "or set PITWALL_CHROMIUM"
        )
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


@dataclass
class ConsoleLog:
    """Every console message and uncaught page error of one page."""

    messages: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def attach(self, page: Page) -> ConsoleLog:
        page.on("console", self._on_console)
        page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))
        return self

    def _on_console(self, message: ConsoleMessage) -> None:
        line = f"{message.type}: {message.text}"
        self.messages.append(line)
        if message.type == "error":
            self.errors.append(line)


def restart_on_same_port(old: ServerProcess) -> ServerProcess:
    """A new server with ``old``'s arguments, HTTP and UDP ports; ``old`` must be stopped."""
    new = ServerProcess(old.tmp, *old.args, env=old.env)
    new.port = old.port
    new.udp_port = old.udp_port
    new.log_path = old.tmp / f"server-{old.port}-restarted.log"
    return new.start()


def dashboard_state(page: Page) -> dict[str, Any]:
    """What the page shows and holds, read through the DOM and ``window.pitwall``."""
    state: dict[str, Any] = page.evaluate(
        """() => {
          const rows = [...document.querySelectorAll('#timing-body tr[data-chassis]')];
          const cell = (tr, f) => tr.querySelector(`[data-field="${f}"]`).textContent;
          const markers = [...document.querySelectorAll('#track-map .marker[data-chassis]')];
          const pw = window.pitwall;
          return {
            conn: document.getElementById('conn-state').textContent,
            frames: pw ? pw.stats.frames : 0,
            errors: pw ? pw.stats.errors : 0,
            cap: pw ? pw.store.cap : 0,
            counts: pw ? Object.fromEntries([...pw.store.cars.keys()].map(
              (c) => [c, pw.store.count(c)])) : {},
            rows: Object.fromEntries(rows.map((tr) => [tr.dataset.chassis, {
              lap: cell(tr, 'lap'), speed: cell(tr, 'speed'), sector: cell(tr, 'sector'),
              last: cell(tr, 'last'), best: cell(tr, 'best'),
              tires: Object.fromEntries([...tr.querySelectorAll('.tire')].map(
                (t) => [t.dataset.corner, t.dataset.value || ''])),
            }])),
            markers: Object.fromEntries(markers.map((g) => [g.dataset.chassis, {
              x: Number(g.dataset.x), y: Number(g.dataset.y), lapdist: Number(g.dataset.lapdist),
            }])),
            latest: pw ? Object.fromEntries([...pw.store.cars.values()].map(
              (car) => [car.chassis, car.latest])) : {},
          };
        }"""
    )
    return state


def wait_in_page(page: Page, expression: str, timeout_units: float, what: str) -> None:
    """Wait until ``expression`` (JS, evaluated in the page) is truthy; fail naming ``what``."""
    try:
        page.wait_for_function(expression, timeout=timeout_units * UNIT_MS, polling=100)
    except PlaywrightTimeout as exc:
        raise AssertionError(f"timed out waiting for {what}: {expression}") from exc
