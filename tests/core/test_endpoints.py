"""The one table of endpoints: every variable it names sets its setting, every hint and
the local runtime's messages name what it says."""

from __future__ import annotations

import pytest

from cryptoctl.endpoints import SERVICES, by_service
from cryptoctl.errors import ServiceUnavailable
from cryptoctl.settings import load_settings

ELSEWHERE = {
    "kafka": "127.0.0.9:9999",
    "postgres": "postgresql://u@127.0.0.9:5999/db",
    "redis": "redis://127.0.0.9:6999/1",
}


@pytest.mark.parametrize("endpoint", SERVICES, ids=lambda e: e.key)
def test_each_variable_sets_the_setting_and_the_default_is_the_settings_default(
    endpoint, tmp_path
) -> None:
    empty = tmp_path / "config.toml"
    empty.write_text("")
    assert getattr(load_settings({}, environ={}, config_path=empty), endpoint.setting) == (
        endpoint.default
    )
    for var in endpoint.env:
        resolved = load_settings({}, environ={var: ELSEWHERE[endpoint.key]}, config_path=empty)
        assert getattr(resolved, endpoint.setting) == ELSEWHERE[endpoint.key]


@pytest.mark.parametrize("endpoint", SERVICES, ids=lambda e: e.key)
def test_the_unreachable_hint_names_the_flag_and_variable(endpoint) -> None:
    error = ServiceUnavailable(endpoint.service, endpoint.default)
    assert f"{endpoint.flag} / {endpoint.env[0]}" in (error.hint or "")
    assert by_service(endpoint.key) is by_service(endpoint.service) is endpoint


def test_an_unknown_service_has_no_endpoint_and_a_plain_hint() -> None:
    assert by_service("Memcached") is None
    assert ServiceUnavailable("Memcached", "localhost:11211").hint == (
        "start the local stack with `cryptoctl up`"
    )
