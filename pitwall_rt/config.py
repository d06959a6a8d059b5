"""Settings: defaults, then config.toml, then environment, then command line.

Every setting has one name, the one in DESIGN.md (``PORT``, ``BATCH_MS``...),
used as the TOML key and the environment variable; the command-line flag is
the same name in lower case with dashes (``--batch-ms``). A bad value stops
start-up with one line that names the setting, where it came from, and what
was wrong: ``ConfigError: BATCH_MS from environment: must be an integer >= 1``.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any


class ConfigError(Exception):
    """A setting is missing, malformed or out of range; the message names it."""


def _int(lo: int, hi: int) -> Callable[[Any], int]:
    def parse(value: Any) -> int:
        if isinstance(value, bool):
            raise ValueError(f"must be an integer in [{lo}, {hi}]")
        try:
            number = int(str(value).strip()) if not isinstance(value, int) else value
        except ValueError:
            raise ValueError(f"must be an integer in [{lo}, {hi}], got {value!r}") from None
        if not lo <= number <= hi:
            raise ValueError(f"must be an integer in [{lo}, {hi}], got {number}")
        return number

    return parse


def _float(lo: float, hi: float) -> Callable[[Any], float]:
    def parse(value: Any) -> float:
        if isinstance(value, bool):
            raise ValueError(f"must be a number in [{lo}, {hi}]")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"must be a number in [{lo}, {hi}], got {value!r}") from None
        if not lo <= number <= hi:
            raise ValueError(f"must be a number in [{lo}, {hi}], got {number}")
        return number

    return parse


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be a string, got {value!r}")
    return value


def _path(value: Any) -> str:
    text = _str(value)
    if not text:
        raise ValueError("must be a non-empty path")
    return text


def _ws_path(value: Any) -> str:
    text = _str(value)
    if not text.startswith("/"):
        raise ValueError(f"must start with '/', got {text!r}")
    return text


def _choice(*options: str) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        text = _str(value).lower()
        if text not in options:
            raise ValueError(f"must be one of {', '.join(options)}, got {value!r}")
        return text

    return parse


@dataclass(frozen=True)
class Settings:
    """Every setting, with its default. Names match DESIGN.md."""

    HOST: str = "0.0.0.0"
    PORT: int = 8081
    UDP_PORT: int = 20777
    WS_PATH: str = "/ws/realtime"
    DEMO_DATA_PATH: str = "./demo_data.json"
    TRACK_SECTORS_PATH: str = "./public/tracks/track_sectors.json"
    PUBLIC_DIR: str = "./public"
    BATCH_MS: int = 600
    RINGBUFFER_SIZE: int = 20000
    MAX_WS_BUFFER: int = 2_000_000
    WS_MAX_POINTS: int = 30
    WS_STUCK_S: float = 10.0
    WS_MAX_CLIENTS: int = 5000
    MAX_BODY_BYTES: int = 8_000_000
    MAX_CHASSIS: int = 1024
    MAX_TRACKS: int = 256
    UDP_RCVBUF: int = 32 * 1024 * 1024
    INGEST_PARSER: str = "process"
    S3_BUCKET: str = ""
    S3_PREFIX: str = ""
    AWS_REGION: str = "us-east-1"
    S3_POLL_S: float = 10.0
    API_KEY: str = ""
    WORKERS: int = 2
    WORKER_PRIORITY: str = "idle"
    DATA_DIR: str = "./data"
    DEMO_SPEED: float = 1.0
    LOOP: str = "auto"
    LOG_LEVEL: str = "info"


# How each setting's text is read and checked.
_PARSERS: dict[str, Callable[[Any], Any]] = {
    "HOST": _str,
    "PORT": _int(0, 65535),
    "UDP_PORT": _int(0, 65535),
    "WS_PATH": _ws_path,
    "DEMO_DATA_PATH": _path,
    "TRACK_SECTORS_PATH": _path,
    "PUBLIC_DIR": _path,
    "BATCH_MS": _int(10, 60_000),
    "RINGBUFFER_SIZE": _int(16, 50_000_000),
    "MAX_WS_BUFFER": _int(1024, 1 << 31),
    "WS_MAX_POINTS": _int(1, 100_000),
    "WS_STUCK_S": _float(0.1, 3600.0),
    "WS_MAX_CLIENTS": _int(1, 1_000_000),
    "MAX_BODY_BYTES": _int(1024, 1 << 31),
    "MAX_CHASSIS": _int(1, 1_000_000),
    "MAX_TRACKS": _int(1, 100_000),
    "UDP_RCVBUF": _int(0, 1 << 31),
    "INGEST_PARSER": _choice("process", "loop"),
    "S3_BUCKET": _str,
    "S3_PREFIX": _str,
    "AWS_REGION": _str,
    "S3_POLL_S": _float(0.05, 86_400.0),
    "API_KEY": _str,
    "WORKERS": _int(1, 256),
    "WORKER_PRIORITY": _choice("idle", "normal"),
    "DATA_DIR": _path,
    "DEMO_SPEED": _float(0.01, 1000.0),
    "LOOP": _choice("auto", "uvloop", "asyncio"),
    "LOG_LEVEL": _choice("debug", "info", "warning", "error"),
}

SETTING_NAMES = tuple(f.name for f in fields(Settings))
assert set(SETTING_NAMES) == set(_PARSERS), "every setting needs a parser"


def flag_name(name: str) -> str:
    """``BATCH_MS`` -> ``--batch-ms``."""
    return "--" + name.lower().replace("_", "-")


def load_settings(
    config_path: str | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Merge the layers; later layers win. Raises ConfigError naming the setting.

    ``config_path`` None means ``./config.toml`` if it exists (or the file
    named by ``PITWALL_CONFIG``); an explicit path must exist.
    """
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    for name, (raw, origin) in _layers(config_path, env, overrides or {}).items():
        try:
            values[name] = _PARSERS[name](raw)
        except ValueError as exc:
            raise ConfigError(f"{name} from {origin}: {exc}") from None
    return Settings(**values)


def _layers(
    config_path: str | None, env: Mapping[str, str], overrides: Mapping[str, Any]
) -> dict[str, tuple[Any, str]]:
    merged: dict[str, tuple[Any, str]] = {}
    path = config_path or env.get("PITWALL_CONFIG")
    if path is not None or Path("config.toml").exists():
        file = Path(path or "config.toml")
        for name, raw in _read_toml(file).items():
            merged[name] = (raw, str(file))
    for name in SETTING_NAMES:
        if name in env:
            merged[name] = (env[name], "environment")
    for name, raw in overrides.items():
        if name not in _PARSERS:
            raise ConfigError(f"{name}: unknown setting")
        if raw is not None:
            merged[name] = (raw, f"command line {flag_name(name)}")
    return merged


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file {path}: not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: not valid TOML: {exc}") from None
    unknown = sorted(set(data) - set(SETTING_NAMES))
    if unknown:
        raise ConfigError(f"{unknown[0]} in {path}: unknown setting")
    return data
