"""metrics_port / metrics_host resolve like every setting: flag > env > file > default."""

from __future__ import annotations

from pathlib import Path

import pytest

from cryptoctl.errors import ConfigError
from cryptoctl.settings import load_settings


def test_off_and_on_loopback_by_default(tmp_path: Path) -> None:
    s = load_settings(environ={}, config_path=_empty(tmp_path))
    assert s.metrics_port is None and s.metrics_host == "127.0.0.1"


def _empty(tmp_path: Path) -> Path:
    path = tmp_path / "config.toml"
    path.write_text("")
    return path


def test_flag_over_env_over_file(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('metrics_port = 9500\nmetrics-host = "0.0.0.0"\n')
    from_file = load_settings(environ={}, config_path=config)
    assert (from_file.metrics_port, from_file.metrics_host) == (9500, "0.0.0.0")
    env = {"CRYPTOCTL_METRICS_PORT": "9501", "CRYPTOCTL_METRICS_HOST": "::1"}
    from_env = load_settings(environ=env, config_path=config)
    assert (from_env.metrics_port, from_env.metrics_host) == (9501, "::1")
    flagged = from_env.with_overrides(metrics_port=9502, metrics_host=None)
    assert (flagged.metrics_port, flagged.metrics_host) == (9502, "::1")
    assert flagged.origins["metrics_port"] == "flag" and flagged.origins["metrics_host"] == "env"


@pytest.mark.parametrize("value", ["0", "65536", "http", "-1"])
def test_a_bad_port_is_a_config_error(value: str) -> None:
    with pytest.raises(ConfigError, match="metrics_port"):
        load_settings(environ={"CRYPTOCTL_METRICS_PORT": value}, config_path=None)
