"""pitwall_rt.config: defaults, then config.toml, then environment, then flags.

Every test passes ``env`` explicitly and runs in a temporary directory, so
neither the developer's environment nor the repo's config.toml leaks in.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pitwall_rt.config import (
    SETTING_NAMES,
    ConfigError,
    Settings,
    flag_name,
    load_settings,
)


@pytest.fixture(autouse=True)
def in_empty_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write_toml(directory: Path, text: str, name: str = "config.toml") -> Path:
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


def test_config_defaults_match_design() -> None:
    s = load_settings(env={})
    assert s == Settings()
    assert (s.PORT, s.UDP_PORT, s.WS_PATH) == (8081, 20777, "/ws/realtime")
    assert (s.BATCH_MS, s.RINGBUFFER_SIZE, s.MAX_WS_BUFFER) == (600, 20000, 2_000_000)
    assert s.DEMO_DATA_PATH == "./demo_data.json"
    assert s.TRACK_SECTORS_PATH == "./public/tracks/track_sectors.json"


def test_config_every_design_setting_exists() -> None:
    design = {
        "HOST", "PORT", "UDP_PORT", "WS_PATH", "DEMO_DATA_PATH", "TRACK_SECTORS_PATH",
        "BATCH_MS", "RINGBUFFER_SIZE", "MAX_WS_BUFFER", "S3_BUCKET", "S3_PREFIX",
        "AWS_REGION", "S3_POLL_S", "API_KEY", "WS_MAX_POINTS", "WORKERS", "DATA_DIR",
    }  # fmt: skip
    assert design <= set(SETTING_NAMES)


def test_config_reads_toml_file(in_empty_dir: Path) -> None:
    path = write_toml(in_empty_dir, 'PORT = 9000\nWS_PATH = "/live"\nS3_POLL_S = 2.5\n', "x.toml")
    s = load_settings(str(path), env={})
    assert (s.PORT, s.WS_PATH, s.S3_POLL_S) == (9000, "/live", 2.5)
    assert s.BATCH_MS == 600


def test_config_reads_config_toml_in_working_directory(in_empty_dir: Path) -> None:
    write_toml(in_empty_dir, "BATCH_MS = 50\n")
    assert load_settings(env={}).BATCH_MS == 50


def test_config_pitwall_config_env_names_the_file(in_empty_dir: Path) -> None:
    path = write_toml(in_empty_dir, "WORKERS = 7\n", "other.toml")
    assert load_settings(env={"PITWALL_CONFIG": str(path)}).WORKERS == 7


def test_config_environment_beats_file(in_empty_dir: Path) -> None:
    path = write_toml(in_empty_dir, 'PORT = 9000\nBATCH_MS = 50\nHOST = "10.0.0.1"\n')
    s = load_settings(str(path), env={"PORT": " 9100 ", "HOST": "127.0.0.1"})
    assert (s.PORT, s.HOST, s.BATCH_MS) == (9100, "127.0.0.1", 50)


def test_config_overrides_beat_environment_and_file(in_empty_dir: Path) -> None:
    path = write_toml(in_empty_dir, "PORT = 9000\nWORKERS = 3\n")
    s = load_settings(
        str(path), env={"PORT": "9100", "WORKERS": "4"}, overrides={"PORT": 9200, "WORKERS": None}
    )
    assert (s.PORT, s.WORKERS) == (9200, 4)


def test_config_ignores_unrelated_environment_variables() -> None:
    s = load_settings(env={"PATH": "/bin", "port": "1", "HOME": "/root"})
    assert s == Settings()


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("PORT", "abc"),
        ("PORT", "70000"),
        ("PORT", "-1"),
        ("PORT", ""),
        ("UDP_PORT", "8081.5"),
        ("BATCH_MS", "0"),
        ("BATCH_MS", "5"),
        ("RINGBUFFER_SIZE", "1"),
        ("MAX_WS_BUFFER", "10"),
        ("WS_MAX_POINTS", "0"),
        ("WORKERS", "0"),
        ("WORKERS", "1000"),
        ("WORKER_PRIORITY", "realtime"),
        ("S3_POLL_S", "fast"),
        ("S3_POLL_S", "0"),
        ("S3_POLL_S", "nan"),
        ("WS_STUCK_S", "inf"),
        ("WS_PATH", "ws/realtime"),
        ("DATA_DIR", ""),
        ("DEMO_DATA_PATH", ""),
        ("LOOP", "trio"),
        ("LOG_LEVEL", "loud"),
    ],
)
def test_config_bad_environment_value_names_the_setting(name: str, raw: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(env={name: raw})
    message = str(info.value)
    assert message.startswith(f"{name} from environment: ")
    assert "\n" not in message


@pytest.mark.parametrize(
    ("line", "name"),
    [
        ("PORT = true", "PORT"),
        ("WORKERS = false", "WORKERS"),
        ("S3_POLL_S = true", "S3_POLL_S"),
        ("BATCH_MS = 600.5", "BATCH_MS"),
        ("BATCH_MS = [600]", "BATCH_MS"),
        ("HOST = 5", "HOST"),
        ("API_KEY = []", "API_KEY"),
        ("LOOP = 1", "LOOP"),
    ],
)
def test_config_bad_toml_value_names_the_setting_and_file(
    in_empty_dir: Path, line: str, name: str
) -> None:
    path = write_toml(in_empty_dir, line + "\n")
    with pytest.raises(ConfigError) as info:
        load_settings(str(path), env={})
    assert str(info.value).startswith(f"{name} from {path}: ")


@pytest.mark.parametrize(
    ("name", "raw"), [("PORT", True), ("WORKERS", False), ("WS_STUCK_S", True)]
)
def test_config_bools_are_rejected_for_numbers_on_the_command_line(name: str, raw: Any) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(env={}, overrides={name: raw})
    assert str(info.value).startswith(f"{name} from command line {flag_name(name)}: ")


def test_config_unknown_key_in_toml_is_an_error(in_empty_dir: Path) -> None:
    path = write_toml(in_empty_dir, "PORT = 9000\nBATCH_SIZE = 3\n")
    with pytest.raises(ConfigError) as info:
        load_settings(str(path), env={})
    assert str(info.value).startswith("BATCH_SIZE in ")
    assert "unknown setting" in str(info.value)


def test_config_missing_explicit_file_is_an_error(in_empty_dir: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_settings(str(in_empty_dir / "nope.toml"), env={})


def test_config_invalid_toml_is_an_error(in_empty_dir: Path) -> None:
    path = write_toml(in_empty_dir, "PORT = = 1\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(str(path), env={})


def test_config_bad_file_value_overridden_by_environment_is_not_an_error(
    in_empty_dir: Path,
) -> None:
    path = write_toml(in_empty_dir, 'PORT = "nope"\n')
    assert load_settings(str(path), env={"PORT": "9001"}).PORT == 9001


def test_config_choices_are_case_insensitive() -> None:
    s = load_settings(env={"LOOP": "UVLOOP", "LOG_LEVEL": "Debug"})
    assert (s.LOOP, s.LOG_LEVEL) == ("uvloop", "debug")


def test_config_flag_name_is_lower_case_with_dashes() -> None:
    assert flag_name("BATCH_MS") == "--batch-ms"
    assert flag_name("PORT") == "--port"
