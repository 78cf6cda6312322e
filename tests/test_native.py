"""Tests for the rules and the worker config schema of `wool_docker._native`.

Each value that crosses into the native core has one rule, kept there; these
tests call the real native module, without a Docker Engine.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wool_docker import _native

string_maps = st.dictionaries(st.text(), st.text())
"""Any string-to-string mapping, as wool carries ``extra``."""


def _config() -> dict[str, Any]:
    """A complete worker config, every key present, as ``worker.py`` passes it."""
    return {
        "image": "wool-worker:test",
        "pull": "missing",
        "name": "wool-worker-0123456789ab",
        "network": None,
        "publication": {
            "uid": "6f0c1a52-3a70-4a36-9a4b-0b7f3d2a9c11",
            "port": 50051,
            "tags": ["gpu"],
            "extra": {"region": "eu"},
            "secure": False,
            "identity": None,
            "options": {"max_concurrent_streams": 10, "compression": 0},
            "network": None,
        },
        "selector": {"wool.worker": "true"},
        "labels": {},
        "environment": {},
        "volumes": [],
        "cpus": None,
        "mem_limit": None,
        "gpus": None,
        "python": "3.11",
        "wool_version": "0.15.7",
        "tls": None,
        "start_timeout": 60.0,
        "shutdown_grace_period": 60.0,
        "server_options": {"proxy_pool_ttl": 60.0},
        "proxy_pool_ttl": 60.0,
        "backpressure": b"\x80\x05N.",
        "engine_access": "feed",
        "sandbox": {
            "user": "65532:65532",
            "read_only": True,
            "tmpfs": {},
            "cap_add": [],
            "security_opt": ["no-new-privileges:true"],
            "pids_limit": 512,
            "oom_score_adj": 500,
            "ulimits": {"nofile": (8192, 8192)},
            "log_config": {"type": "local", "config": {"max-size": "10m"}},
            "runtime": None,
        },
        "swarm": None,
    }


def test_check_port_with_valid_ports():
    """Test the port rule on ports at both ends of the range.

    Given:
        Ports 1 and 65535, as numbers and as text with blanks
    When:
        `check_port` is called
    Then:
        It should return each port as a number
    """
    # Act & assert
    assert _native.check_port(1) == 1
    assert _native.check_port(65535) == 65535
    assert _native.check_port(" 6000\n") == 6000


@pytest.mark.parametrize(
    "port", [0, -1, 65536, 2**70, "", "http", "1.5", 1.5, True, None], ids=repr
)
def test_check_port_with_invalid_port(port):
    """Test the port rule on what is not a port.

    Given:
        A number outside 1-65535, text that is no integer, or no integer at all
    When:
        `check_port` is called
    Then:
        It should raise `ValueError` naming the range
    """
    # Act & assert
    with pytest.raises(ValueError, match="1-65535"):
        _native.check_port(port)


def test_check_extra_with_json_text():
    """Test the extra rule on the text of a label or ``WOOL_EXTRA``.

    Given:
        A JSON object of strings to strings
    When:
        `check_extra` is called
    Then:
        It should return it as a dict
    """
    # Act & assert
    assert _native.check_extra('{"zone": "b", "region": "eu"}') == {
        "region": "eu",
        "zone": "b",
    }
    assert _native.check_extra("{}") == {}


@pytest.mark.parametrize(
    "extra",
    [
        {"answer": 42},
        {"flag": True},
        {"nothing": None},
        {"list": ["a"]},
        {"nested": {"a": "b"}},
        {1: "one"},
        {"object": object()},
        ["a"],
        '{"answer": 42}',
        "[1]",
        "{",
    ],
    ids=[
        "int",
        "bool",
        "none",
        "list",
        "dict",
        "int-key",
        "object",
        "not-a-mapping",
        "text-int",
        "text-array",
        "text-broken",
    ],
)
def test_check_extra_with_non_string_entry(extra):
    """Test the extra rule on what is not strings to strings.

    Given:
        A mapping or JSON text with a non-string key or value, or no object
    When:
        `check_extra` is called
    Then:
        It should raise `ValueError` saying what extra must be
    """
    # Act & assert
    with pytest.raises(ValueError, match="must map strings to strings"):
        _native.check_extra(extra)


@given(
    extra=string_maps,
    key=st.text(),
    value=st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats()
    | st.booleans()
    | st.none(),
)
def test_check_extra_with_arbitrary_non_string_value(extra, key, value):
    """Test that any non-string value is refused.

    Given:
        Any string-to-string mapping plus one entry with a number, boolean or
        ``None`` value
    When:
        `check_extra` is called
    Then:
        It should raise `ValueError`
    """
    # Arrange
    extra = {**extra, key: value}

    # Act & assert
    with pytest.raises(ValueError):
        _native.check_extra(extra)


@given(extra=string_maps)
def test_check_extra_with_arbitrary_extra(extra):
    """Test the extra rule on any string-to-string mapping and its JSON text.

    Given:
        Any string-to-string mapping
    When:
        `check_extra` is called on it and on its JSON text
    Then:
        It should return a mapping equal to the original both times
    """
    # Act & assert
    assert _native.check_extra(extra) == extra
    assert _native.check_extra(json.dumps(extra)) == extra


def test_check_worker_config_with_complete_config():
    """Test the worker config schema on a config with every key.

    Given:
        A config as ``worker.py`` builds it
    When:
        `check_worker_config` is called
    Then:
        It should accept it
    """
    # Act & assert
    _native.check_worker_config(_config())


@pytest.mark.parametrize(
    "path",
    [
        ("engine_acess",),
        ("publication", "extras"),
        ("sandbox", "readonly"),
        ("tls", "mutal"),
    ],
    ids=lambda p: ".".join(p),
)
def test_check_worker_config_with_unknown_key(path):
    """Test that a misspelt key fails loudly at any depth.

    Given:
        A complete config with one unknown key added (the ``tls`` case with
        TLS material)
    When:
        `check_worker_config` is called
    Then:
        It should raise `ValueError` naming the unknown key
    """
    # Arrange
    config = _config()
    config["tls"] = {"ca": "CA", "cert": "CERT", "key": "KEY", "mutual": True}
    *parents, key = path
    target = config
    for parent in parents:
        target = target[parent]
    target[key] = target.get(key, "x")

    # Act & assert
    with pytest.raises(ValueError, match=f"unknown field `{key}`"):
        _native.check_worker_config(config)


@pytest.mark.parametrize(
    "key", ["image", "labels", "shutdown_grace_period", "server_options", "sandbox"]
)
def test_check_worker_config_with_renamed_key(key):
    """Test that a key renamed on one side does not become a default.

    Given:
        A complete config with one required key under another name
    When:
        `check_worker_config` is called
    Then:
        It should raise `ValueError`
    """
    # Arrange
    config = _config()
    config[f"{key}_v2"] = config.pop(key)

    # Act & assert
    with pytest.raises(ValueError, match="invalid worker configuration"):
        _native.check_worker_config(config)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("publication", "port"), 0),
        (("publication", "extra"), {"answer": 42}),
        (("publication", "options"), '{"compression": 0}'),
        (("server_options",), '{"proxy_pool_ttl": 60}'),
        (("backpressure",), "gAVOLg=="),
        (("engine_access",), "proxy"),
    ],
    ids=lambda v: ".".join(v) if isinstance(v, tuple) else None,
)
def test_check_worker_config_with_bad_value(path, value):
    """Test that each value is held to its rule inside the config.

    Given:
        A complete config with one value broken: a port out of range,
        non-string extra, nested values as JSON or base64 text (the old
        boundary), an engine access the core does not know
    When:
        `check_worker_config` is called
    Then:
        It should raise `ValueError`
    """
    # Arrange
    config = copy.deepcopy(_config())
    *parents, key = path
    target = config
    for parent in parents:
        target = target[parent]
    target[key] = value

    # Act & assert
    with pytest.raises(ValueError, match="invalid worker configuration"):
        _native.check_worker_config(config)


def test_start_worker_with_unknown_key():
    """Test that ``start_worker`` reads its config before any Engine I/O.

    Given:
        A config with an unknown key and an Engine address nothing listens on
    When:
        `start_worker` is called
    Then:
        It should raise `ValueError` at once, not an Engine error
    """
    # Arrange
    config = {**_config(), "bogus": 1}

    # Act & assert
    with pytest.raises(ValueError, match="unknown field `bogus`"):
        _native.start_worker(config, 1.0, False, "unix:///nonexistent/docker.sock")
