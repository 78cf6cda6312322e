"""Tests for `wool_docker.cli`, without a Docker Engine."""

from __future__ import annotations

import pytest

from wool_docker import image as image_module
from wool_docker.cli import main
from wool_docker.exceptions import ImageBuildError
from wool_docker.exceptions import ImageNotFoundError


def test_main_with_image_build(mocker, capsys):
    """Test ``image build`` with every option.

    Given:
        ``image build`` with a tag, base, requirements, packages, wheel,
        port, host and ``--push``
    When:
        `main` is called
    Then:
        It should build the image with those options, print its id and
        return 0
    """
    # Arrange
    build_image = mocker.patch.object(
        image_module, "build_image", return_value="sha256:1234"
    )

    # Act
    status = main(
        [
            "image",
            "build",
            "--tag",
            "wool-worker:test",
            "--base",
            "wool-docker-base:bookworm",
            "-r",
            "requirements.txt",
            "--requirement",
            "more.txt",
            "--package",
            "./myapp",
            "-p",
            "numpy>=2",
            "--wool-docker-wheel",
            "dist/wool_docker-0.1.0-cp311-abi3-linux_x86_64.whl",
            "--port",
            "6000",
            "--host",
            "tcp://127.0.0.1:2375",
            "--push",
        ]
    )

    # Assert
    assert status == 0
    build_image.assert_awaited_once_with(
        "wool-worker:test",
        base="wool-docker-base:bookworm",
        requirements=["requirements.txt", "more.txt"],
        packages=["./myapp", "numpy>=2"],
        wool_docker_wheel="dist/wool_docker-0.1.0-cp311-abi3-linux_x86_64.whl",
        host="tcp://127.0.0.1:2375",
        port=6000,
        labels={},
        push=True,
    )
    assert capsys.readouterr().out == "sha256:1234\n"


def test_main_with_image_build_defaults(mocker):
    """Test ``image build`` with only a tag.

    Given:
        ``image build --tag TAG``
    When:
        `main` is called
    Then:
        It should build with the default base, no extra packages, the
        installed wool-docker, the default port and host, and not push
    """
    # Arrange
    build_image = mocker.patch.object(
        image_module, "build_image", return_value="sha256:1234"
    )

    # Act
    status = main(["image", "build", "-t", "wool-worker:test"])

    # Assert
    assert status == 0
    build_image.assert_awaited_once_with(
        "wool-worker:test",
        base=None,
        requirements=[],
        packages=[],
        wool_docker_wheel=None,
        host=None,
        port=50051,
        labels={},
        push=False,
    )


def test_main_with_wool_docker_error(mocker, capsys):
    """Test a command that fails with a wool-docker error.

    Given:
        ``image build`` whose base image is missing
    When:
        `main` is called
    Then:
        It should print ``wool-docker: error: <message>`` to standard error
        without a traceback and return 1
    """
    # Arrange
    message = "image 'python:3.11-slim' is not on the daemon; run scripts/base-image.sh"
    mocker.patch.object(
        image_module,
        "build_image",
        side_effect=ImageNotFoundError(message, image="python:3.11-slim"),
    )

    # Act
    status = main(["image", "build", "--tag", "wool-worker:test"])

    # Assert
    captured = capsys.readouterr()
    assert status == 1
    assert captured.err == f"wool-docker: error: {message}\n"
    assert captured.out == ""


def test_main_with_image_build_error(mocker, capsys):
    """Test a failed build whose log is not in the message.

    Given:
        ``image build`` failing with an `ImageBuildError` carrying a log
    When:
        `main` is called
    Then:
        It should print the log, then the error line, and return 1
    """
    # Arrange
    mocker.patch.object(
        image_module,
        "build_image",
        side_effect=ImageBuildError(
            "building 'wool-worker:test' failed", tag="wool-worker:test", log="Step 3/9"
        ),
    )

    # Act
    status = main(["image", "build", "--tag", "wool-worker:test"])

    # Assert
    assert status == 1
    assert capsys.readouterr().err == (
        "Step 3/9\nwool-docker: error: building 'wool-worker:test' failed\n"
    )


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["image"],
        ["image", "build"],
        ["image", "build", "--tag", "t", "--port", "0"],
        ["image", "build", "--tag", "t", "--port", "http"],
    ],
)
def test_main_with_usage_error(argv, capsys):
    """Test arguments that do not form a command.

    Given:
        No command, no subcommand, no tag, or a bad port
    When:
        `main` is called
    Then:
        It should exit with status 2 and a usage message
    """
    # Act & assert
    with pytest.raises(SystemExit) as raised:
        main(argv)
    assert raised.value.code == 2
    assert "usage: wool-docker" in capsys.readouterr().err


def test_main_with_version(capsys):
    """Test ``wool-docker --version``.

    Given:
        The installed package
    When:
        ``wool-docker --version`` runs
    Then:
        It should print wool-docker's and wool's versions and exit 0
    """
    # Arrange
    from importlib import metadata

    # Act
    with pytest.raises(SystemExit) as caught:
        main(["--version"])

    # Assert
    assert caught.value.code == 0
    ours, wool = metadata.version("wool-docker"), metadata.version("wool")
    assert capsys.readouterr().out.strip() == f"wool-docker {ours} (wool {wool})"
