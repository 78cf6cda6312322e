"""Tests for the opt-in pytest plugin `wool_docker.pytest`, run through pytester.

Each test writes a small test module and runs pytest on it in a subprocess, as a
user's suite would run. The ones that need the Docker Engine are marked
``integration``; they use labels, networks and image tags unique to them and
remove them.
"""

from __future__ import annotations

import subprocess
import textwrap
import time
from importlib import metadata
from pathlib import Path
from uuid import uuid4

import pytest

from wool_docker.pytest import CASE_LABEL
from wool_docker.pytest import NAME_PREFIX
from wool_docker.pytest import DockerCli
from wool_docker.pytest import image_key

pytest_plugins = ["pytester"]

BASE = "wool-docker-base:bookworm"
"""The base image on this machine (``scripts/base-image.sh``)."""


def _docker(*args: str) -> str:
    return DockerCli().run(*args).stdout


def test_plugin_is_opt_in(pytester: pytest.Pytester):
    """No ``pytest11`` entry point loads it; without ``-p`` its fixtures are
    unknown, with ``-p wool_docker.pytest`` they exist."""
    groups = {e.group for e in metadata.distribution("wool-docker").entry_points}
    assert "pytest11" not in groups
    pytester.makepyfile("def test_x(wool_docker_labels):\n    pass\n")
    result = pytester.runpytest_subprocess("--fixtures")
    assert "wool_docker_labels" not in result.stdout.str()
    result = pytester.runpytest_subprocess("-p", "wool_docker.pytest", "--fixtures")
    for fixture in (
        "wool_docker_image",
        "wool_docker_network",
        "wool_docker_pool",
        "wool_docker_cli",
        "wool_docker_session_labels",
    ):
        assert fixture in result.stdout.str()


def test_no_daemon_is_a_clear_error(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
):
    """A test using the fixtures errors with what is wrong and what to do."""
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent")
    pytester.makepyfile("def test_x(wool_docker_labels):\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "wool_docker.pytest")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "*wool-docker: no Docker daemon for the tests: the Docker Engine socket "
            "/nonexistent does not exist: the daemon is not running, or DOCKER_HOST*"
        ]
    )
    assert "Traceback" not in result.stdout.str()


def test_image_key_follows_what_goes_in(tmp_path: Path):
    """The cache key changes with the base, a package's content or a
    requirements file, and only then."""
    package = tmp_path / "app"
    package.mkdir()
    (package / "app.py").write_text("X = 1\n")
    (tmp_path / "requirements.txt").write_text("six\n")

    def key(base: str = "sha256:1") -> str:
        return image_key(
            base_id=base,
            packages=["app"],
            requirements=["requirements.txt"],
            root=tmp_path,
        )

    first = key()
    (package / "__pycache__").mkdir()
    (package / "__pycache__" / "app.pyc").write_bytes(b"ignored")
    assert key() == first
    assert key("sha256:2") != first
    (package / "app.py").write_text("X = 2\n")
    second = key()
    assert second != first
    (tmp_path / "requirements.txt").write_text("six==1.16\n")
    assert key() != second


@pytest.mark.integration
def test_leak_guard_fails_the_leaking_test(
    pytester: pytest.Pytester, wool_docker_image: str
):
    """A test whose container and network outlive it errors, naming them, and
    they are removed; a clean test next to it passes."""
    marker = pytester.path / "case.txt"
    pytester.makepyfile(
        textwrap.dedent(
            f"""
            import subprocess

            def docker(*args):
                subprocess.run(["docker", *args], check=True, capture_output=True)

            def test_clean(wool_docker_network):
                pass

            def test_leaky(wool_docker_labels):
                (key, value), = wool_docker_labels.items()
                open({str(marker)!r}, "w").write(value)
                docker("create", "--label", f"{{key}}={{value}}", {wool_docker_image!r})
                docker("network", "create", "--label", f"{{key}}={{value}}",
                       f"wool-pytest-leak-{{value}}")
            """
        )
    )
    result = pytester.runpytest_subprocess("-p", "wool_docker.pytest")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        ["*ERROR at teardown of test_leaky*", "*the test leaked containers ['*"]
    )
    label = f"label={CASE_LABEL}={marker.read_text()}"
    assert _docker("ps", "-a", "-q", "--filter", label).split() == []
    assert _docker("network", "ls", "-q", "--filter", label).split() == []


@pytest.mark.integration
def test_pool_runs_routines_in_worker_containers(
    pytester: pytest.Pytester, wool_docker_image: str
):
    """``wool_docker_pool`` dispatches the test's routines to containers on the
    test's private network, and leaves nothing behind."""
    pytester.makepyfile(
        textwrap.dedent(
            """
            import os
            import sys

            import cloudpickle
            import pytest
            import wool

            # The workers unpickle this module's routines by value.
            cloudpickle.register_pickle_by_value(sys.modules[__name__])

            @wool.routine
            async def whoami():
                return os.getuid(), os.path.exists("/.dockerenv")

            @pytest.mark.asyncio
            @pytest.mark.wool_docker(workers=1)
            async def test_routine(wool_docker_pool, wool_docker_network):
                assert await whoami() == (65532, True)
            """
        )
    )
    result = pytester.runpytest_subprocess(
        "-p", "wool_docker.pytest", f"--wool-docker-image={wool_docker_image}"
    )
    result.assert_outcomes(passed=1)


@pytest.mark.integration
def test_image_is_built_once_then_reused(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
):
    """The session fixture builds the image from the named base, labels it with
    the key of what went in, and a second session reuses it as it is."""
    out = pytester.path / "image.txt"
    pytester.makepyfile(
        textwrap.dedent(
            f"""
            def test_image(wool_docker_image):
                open({str(out)!r}, "w").write(wool_docker_image)
            """
        )
    )
    # A requirements file unique to this test makes its key (and tag) unique.
    pytester.makeini("[pytest]\nwool_docker_requirements =\n    requirements.txt\n")
    (pytester.path / "requirements.txt").write_text(f"# nonce {uuid4().hex}\n")
    monkeypatch.setenv("WOOL_DOCKER_BASE", BASE)
    try:
        pytester.runpytest_subprocess("-p", "wool_docker.pytest").assert_outcomes(
            passed=1
        )
        tag = out.read_text()
        first = _docker("image", "inspect", "-f", "{{.Id}} {{.Created}}", tag)
        key = _docker(
            "image",
            "inspect",
            "-f",
            '{{index .Config.Labels "wool.docker.pytest.key"}}',
            tag,
        ).strip()
        assert tag == f"wool-docker-pytest:{key[:16]}"
        pytester.runpytest_subprocess("-p", "wool_docker.pytest").assert_outcomes(
            passed=1
        )
        assert out.read_text() == tag
        assert _docker("image", "inspect", "-f", "{{.Id}} {{.Created}}", tag) == first
    finally:
        if out.exists():
            subprocess.run(
                ["docker", "image", "rm", out.read_text()],
                capture_output=True,
                check=False,
            )


@pytest.mark.integration
def test_session_guard_fails_the_leaking_session(
    pytester: pytest.Pytester, wool_docker_image: str
):
    """A container carrying the session's labels, and a network named with
    its prefix, that outlive the session error it, named, and are removed."""
    marker = pytester.path / "run.txt"
    pytester.makepyfile(
        textwrap.dedent(
            f"""
            import subprocess

            from wool_docker.pytest import NAME_PREFIX

            def docker(*args):
                subprocess.run(["docker", *args], check=True, capture_output=True)

            def test_leaky(wool_docker_session_labels, wool_docker_image):
                (key, value), = wool_docker_session_labels.items()
                open({str(marker)!r}, "w").write(f"{{key}}={{value}} {{NAME_PREFIX}}")
                docker("create", "--label", f"{{key}}={{value}}", wool_docker_image)
                docker("network", "create", f"{{NAME_PREFIX}}-leak")
            """
        )
    )
    result = pytester.runpytest_subprocess(
        "-p", "wool_docker.pytest", f"--wool-docker-image={wool_docker_image}"
    )
    result.assert_outcomes(passed=1, errors=1)
    label, prefix = marker.read_text().split()
    assert "the session leaked containers ['" in result.stdout.str()
    assert f"and networks ['{prefix}-leak'] ({label})" in result.stdout.str()
    assert _docker("ps", "-a", "-q", "--filter", f"label={label}").split() == []
    assert _docker("network", "ls", "-q", "--filter", f"name={prefix}").split() == []


@pytest.mark.integration
def test_missing_image_is_a_clear_error(pytester: pytest.Pytester):
    """An image named with ``--wool-docker-image`` that the Engine lacks
    errors the tests using it, with one line naming it."""
    pytester.makepyfile("def test_x(wool_docker_image):\n    pass\n")
    result = pytester.runpytest_subprocess(
        "-p", "wool_docker.pytest", "--wool-docker-image=wool-docker-pytest:no-such"
    )
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "*wool-docker: the worker image 'wool-docker-pytest:no-such' is not on "
            "the Docker Engine*"
        ]
    )
    assert "Traceback" not in result.stdout.str()


@pytest.mark.integration
@pytest.mark.asyncio
async def test_cli_arranges_and_checks(
    wool_docker_cli: DockerCli,
    wool_docker_labels: dict[str, str],
    wool_docker_image: str,
):
    """``wool_docker_cli`` runs commands, waits for an Engine event, inspects a
    container; a failed command fails the test with its error, and removing
    what is gone already is fine."""
    ((key, value),) = wool_docker_labels.items()
    since = time.time()
    created = await wool_docker_cli.arun(
        "create", "--label", f"{key}={value}", wool_docker_image
    )
    container = created.strip()
    try:
        event = await wool_docker_cli.event(
            "type=container", "event=create", f"label={key}={value}",
            since=since, timeout=30,
        )  # fmt: skip
        document = await wool_docker_cli.inspect(container)
        listed = wool_docker_cli.containers(f"{key}={value}")
    finally:
        wool_docker_cli.remove_containers(container)
    assert event["Actor"]["ID"] == container
    assert document["Config"]["Labels"][key] == value
    assert listed == [container]
    with pytest.raises(pytest.fail.Exception, match="docker image inspect .* exited"):
        wool_docker_cli.run("image", "inspect", "wool-docker-pytest:no-such")
    wool_docker_cli.remove_containers(container)
    wool_docker_cli.remove_network(f"{NAME_PREFIX}-no-such")
