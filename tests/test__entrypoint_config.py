"""Tests for the entry point's configuration: environment, container id, root."""

from __future__ import annotations

import uuid

import pytest

from wool_docker._entrypoint import config

CONTAINER_ID = "6f8804658fec75b01c506f38464cd62c5bb46b4dc3ddb5a2ab3bb38b5fe959b0"

# Captured from a Docker 20.10 container (cgroup v1, fuse-overlayfs).
DOCKER_MOUNTINFO = f"""\
69 50 0:52 / / rw,relatime master:26 - fuse.fuse-overlayfs fuse-overlayfs rw
70 69 0:54 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw
86 69 254:0 /var/lib/docker/containers/{CONTAINER_ID}/resolv.conf /etc/resolv.conf \
rw,relatime - ext4 /dev/vda rw,discard
87 69 254:0 /var/lib/docker/containers/{CONTAINER_ID}/hostname /etc/hostname \
rw,relatime - ext4 /dev/vda rw,discard
88 69 254:0 /var/lib/docker/containers/{CONTAINER_ID}/hosts /etc/hosts \
rw,relatime - ext4 /dev/vda rw,discard
"""

DOCKER_CGROUP_V1 = f"""\
9:name=systemd:/docker/{CONTAINER_ID}
8:pids:/docker/{CONTAINER_ID}
4:memory:/docker/{CONTAINER_ID}
0::/
"""

HOST_MOUNTINFO = """\
22 27 0:21 / /proc rw,relatime - proc proc rw
23 27 0:22 / /sys rw,relatime - sysfs sysfs rw
"""

HOST_CGROUP = """\
4:memory:/user.slice
0::/
"""


@pytest.mark.parametrize(
    ("mountinfo", "cgroup"),
    [
        (DOCKER_MOUNTINFO, HOST_CGROUP),
        (HOST_MOUNTINFO, DOCKER_CGROUP_V1),
        (DOCKER_MOUNTINFO, DOCKER_CGROUP_V1),
        (HOST_MOUNTINFO, f"0::/system.slice/docker-{CONTAINER_ID}.scope\n"),
        (
            "1 0 0:1 /var/lib/containers/storage/overlay-containers/"
            f"{CONTAINER_ID}/userdata/hostname /etc/hostname rw - xfs /dev/sda rw\n",
            HOST_CGROUP,
        ),
    ],
    ids=["mountinfo", "cgroup-v1", "both", "systemd-scope", "podman"],
)
def test_find_container_id_with_container_text(mountinfo: str, cgroup: str):
    """Test finding the container id in /proc/self text from a container.

    Given:
        mountinfo or cgroup text naming a container
    When:
        The container id is looked up
    Then:
        It should return the full 64-hex id
    """
    # Act
    found = config.find_container_id(mountinfo, cgroup)

    # Assert
    assert found == CONTAINER_ID


def test_find_container_id_on_host():
    """Test finding the container id outside any container.

    Given:
        mountinfo and cgroup text from a host
    When:
        The container id is looked up
    Then:
        It should return None
    """
    # Act
    found = config.find_container_id(HOST_MOUNTINFO, HOST_CGROUP)

    # Assert
    assert found is None


def test_load_config_with_empty_environment():
    """Test the configuration an empty environment gives.

    Given:
        No WOOL_* variables
    When:
        The configuration is loaded
    Then:
        It should hold the documented defaults and leave the uid to derive
    """
    # Act
    loaded = config.load_config({})

    # Assert
    assert loaded == config.Config(
        host="0.0.0.0",
        port=50051,
        uid=None,
        tags=frozenset(),
        extra={},
        options={},
        identity=None,
        tls=None,
        tls_mutual=True,
        shutdown_grace=60.0,
        stdin_control=False,
        deregister_delay=1.0,
    )


def test_default_uid_in_container(mocker):
    """Test the default worker uid inside a container.

    Given:
        /proc/self naming a container
    When:
        The default uid is derived
    Then:
        It should be the first 32 hex digits of the container id
    """
    # Arrange
    mocker.patch.object(config, "find_container_id", return_value=CONTAINER_ID)

    # Act
    uid = config.default_uid()

    # Assert
    assert uid == uuid.UUID(hex=CONTAINER_ID[:32])


def test_default_uid_outside_container(mocker):
    """Test the default worker uid outside any container.

    Given:
        /proc/self naming no container
    When:
        The default uid is derived
    Then:
        It should be a random (version 4) UUID
    """
    # Arrange
    mocker.patch.object(config, "find_container_id", return_value=None)

    # Act
    uid = config.default_uid()

    # Assert
    assert uid.version == 4


@pytest.mark.parametrize(
    ("environ", "variable"),
    [
        ({"WOOL_PORT": "http"}, "WOOL_PORT"),
        ({"WOOL_PORT": "70000"}, "WOOL_PORT"),
        ({"WOOL_UID": "not-a-uuid"}, "WOOL_UID"),
        ({"WOOL_EXTRA": "{"}, "WOOL_EXTRA"),
        ({"WOOL_EXTRA": '{"n": 1}'}, "WOOL_EXTRA"),
        ({"WOOL_OPTIONS": '"x"'}, "WOOL_OPTIONS"),
        ({"WOOL_TLS_CA": "/ca.pem"}, "WOOL_TLS_CERT"),
        (
            {
                "WOOL_TLS_CA": "/nonexistent/ca",
                "WOOL_TLS_CERT": "/nonexistent/cert",
                "WOOL_TLS_KEY": "/nonexistent/key",
            },
            "WOOL_TLS_CA",
        ),
        ({"WOOL_TLS_MUTUAL": "maybe"}, "WOOL_TLS_MUTUAL"),
        ({"WOOL_IDENTITY": "worker.example"}, "WOOL_IDENTITY"),
        ({"WOOL_SHUTDOWN_GRACE": "0"}, "WOOL_SHUTDOWN_GRACE"),
        ({"WOOL_SHUTDOWN_GRACE": "soon"}, "WOOL_SHUTDOWN_GRACE"),
        ({"WOOL_DEREGISTER_DELAY": "-1"}, "WOOL_DEREGISTER_DELAY"),
        ({"WOOL_DEREGISTER_DELAY": "later"}, "WOOL_DEREGISTER_DELAY"),
        ({"WOOL_DOCKER_STDIN_CONTROL": "2"}, "WOOL_DOCKER_STDIN_CONTROL"),
    ],
)
def test_load_config_with_bad_variable(environ: dict[str, str], variable: str):
    """Test loading a configuration with one bad variable.

    Given:
        An environment with one malformed or inconsistent variable
    When:
        The configuration is loaded
    Then:
        It should raise a configuration error naming that variable
    """
    # Act & assert
    with pytest.raises(config.ConfigError) as caught:
        config.load_config({"WOOL_UID": str(uuid.uuid4()), **environ})
    assert caught.value.variable == variable


@pytest.mark.parametrize(
    ("euid", "environ", "refused"),
    [
        (0, {}, True),
        (0, {"WOOL_ALLOW_ROOT": "0"}, True),
        (0, {"WOOL_ALLOW_ROOT": "1"}, False),
        (65532, {}, False),
    ],
)
def test_refuse_root(mocker, euid, environ, refused):
    """Test the entry point's refusal to serve routines as root.

    Given:
        An effective uid and a ``WOOL_ALLOW_ROOT`` setting
    When:
        The entry point checks its user
    Then:
        It should refuse uid 0 unless ``WOOL_ALLOW_ROOT`` is true, naming
        the variable, and accept any other uid
    """
    # Arrange
    mocker.patch.object(config.os, "geteuid", return_value=euid)

    # Act & assert
    if refused:
        with pytest.raises(config.ConfigError) as raised:
            config.refuse_root(environ)
        assert raised.value.variable == "WOOL_ALLOW_ROOT"
    else:
        config.refuse_root(environ)
