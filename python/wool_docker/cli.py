"""The ``wool-docker`` command line.

Provides `main`, the console script's entry point. Each command is an
``async def _cmd_<name>(args) -> int`` registered in ``_commands`` under
the words that select it, and gets its arguments from a subparser added
in ``_parser``. Errors wool-docker raises on purpose (`WoolDockerError`)
end the command with ``wool-docker: error: <message>`` and exit status 1,
without a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable
from collections.abc import Coroutine
from typing import Any
from typing import Final
from typing import TextIO

from wool_docker import _native
from wool_docker import image
from wool_docker.exceptions import ImageBuildError
from wool_docker.exceptions import WoolDockerError

_log = logging.getLogger(__name__)

_PROGRAM: Final[str] = "wool-docker"
"""The program name in usage and error messages."""

_DEFAULT_PORT: Final[int] = _native.DEFAULT_PORT
"""The worker's port inside the container unless ``--port`` says otherwise."""


# public
def main(argv: list[str] | None = None) -> int:
    """Run the ``wool-docker`` command line.

    :param argv:
        The arguments without the program name. ``None`` (default) reads
        `sys.argv`.
    :returns:
        The exit status: 0 on success, 1 when a command fails, 2 for a
        usage error (from `argparse`), 130 when interrupted.
    """
    args = _parser().parse_args(argv)
    _configure_logging(args.log_level)
    command = _commands[args.command]
    try:
        return asyncio.run(command(args))
    except ImageBuildError as error:
        if error.log and error.log not in str(error):
            print(error.log, file=sys.stderr)
        _print_error(error)
        return 1
    except WoolDockerError as error:
        _print_error(error)
        return 1
    except KeyboardInterrupt:
        return 130


async def _cmd_image_build(args: argparse.Namespace) -> int:
    """Build a worker image: ``wool-docker image build``.

    Prints the new image's id on standard output; progress goes to
    standard error.

    :param args:
        The parsed arguments of the ``image build`` subparser.
    :returns:
        The exit status.
    """
    image_id = await image.build_image(
        args.tag,
        base=args.base,
        requirements=args.requirement,
        packages=args.package,
        wool_docker_wheel=args.wool_docker_wheel,
        host=args.host,
        port=args.port,
        labels=dict(args.label),
        push=args.push,
    )
    print(image_id)
    return 0


async def _cmd_ps(args: argparse.Namespace) -> int:
    """List the workers discovery sees: ``wool-docker ps``.

    Uses the subscriber's own label parsing and address rules.

    :param args:
        The parsed arguments of the ``ps`` subparser.
    :returns:
        The exit status.
    """
    selector = dict(args.label) or dict([_native.DEFAULT_SELECTOR])
    rows = await _native.list_workers(selector, args.network, args.host)
    print(
        f"{'UID':<36}  {'ADDRESS':<21}  {'VERSION':<8}  {'HEALTH':<9}  CONTAINER  TAGS"
    )
    for record, health in rows:
        print(
            f"{record['uid']:<36}  {record['address']:<21}  {record['version']:<8}  "
            f"{health or '-':<9}  {record['container_name']}  "
            f"{','.join(record['tags']) or '-'}"
        )
    return 0


async def _cmd_prune(args: argparse.Namespace) -> int:
    """Remove orphaned worker containers: ``wool-docker prune``.

    :param args:
        The parsed arguments of the ``prune`` subparser.
    :returns:
        The exit status.
    """
    labels = [f"{key}={value}" for key, value in args.label]
    removed, unknown = await _native.prune(args.all, args.host, labels, args.any_user)
    for name in removed:
        print(name)
    if unknown:
        print(
            f"{_PROGRAM}: left {unknown} worker container(s) whose user cannot be "
            "told (an owner label without a uid, from an older wool-docker); "
            "--any-user removes them",
            file=sys.stderr,
        )
    return 0


_commands: Final[dict[str, Callable[[argparse.Namespace], Coroutine[Any, Any, int]]]] = {
    "image build": _cmd_image_build,
    "ps": _cmd_ps,
    "prune": _cmd_prune,
}
"""Each command's coroutine function, keyed by the words that select it; a
subparser names its key with ``set_defaults(command=...)``."""


def _wool_version() -> str:
    """The installed wool's version, without importing wool (and grpc)."""
    from importlib import metadata

    try:
        return metadata.version("wool")
    except metadata.PackageNotFoundError:
        return "not installed"


def _parser() -> argparse.ArgumentParser:
    """Build the argument parser with a subparser per command.

    :returns:
        The parser.
    """
    parser = argparse.ArgumentParser(
        prog=_PROGRAM, description="Run wool workers as Docker containers."
    )
    parser.add_argument(
        "--version",
        action="version",
        version=f"{_PROGRAM} {_native.__version__} (wool {_wool_version()})",
    )
    verbosity = parser.add_mutually_exclusive_group()
    verbosity.add_argument(
        "-v",
        "--verbose",
        action="store_const",
        const=logging.DEBUG,
        dest="log_level",
        default=logging.INFO,
        help="show debug output, e.g. pip's",
    )
    verbosity.add_argument(
        "-q",
        "--quiet",
        action="store_const",
        const=logging.WARNING,
        dest="log_level",
        help="show no progress, only warnings and errors",
    )
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)

    image_parser = commands.add_parser("image", help="manage worker images")
    image_commands = image_parser.add_subparsers(
        title="commands", metavar="COMMAND", required=True
    )
    build = image_commands.add_parser(
        "build",
        help="build a worker image",
        description=(
            "Build a wool worker image. Wheels are fetched on this host with pip; "
            "the build itself needs no network, and the base image must already "
            "be on the daemon."
        ),
    )
    build.set_defaults(command="image build")
    build.add_argument(
        "-t", "--tag", required=True, help="tag for the image, e.g. wool-worker:latest"
    )
    build.add_argument(
        "--base",
        metavar="IMAGE",
        help=(
            "base image with python3 and venv, already on the daemon "
            "(default: python:MAJOR.MINOR-slim of this Python)"
        ),
    )
    build.add_argument(
        "-r",
        "--requirement",
        metavar="FILE",
        action="append",
        default=[],
        help="install the packages of a requirements file; repeatable",
    )
    build.add_argument(
        "-p",
        "--package",
        metavar="PATH_OR_WHEEL",
        action="append",
        default=[],
        help=(
            "install a wheel, a project directory or a requirement string; repeatable"
        ),
    )
    build.add_argument(
        "--wool-docker-wheel",
        metavar="PATH",
        help="wool-docker wheel to install (default: repack the installed wool-docker)",
    )
    build.add_argument(
        "--port",
        type=_port,
        default=_DEFAULT_PORT,
        help=f"port the worker serves on in the container (default: {_DEFAULT_PORT})",
    )
    build.add_argument(
        "--push",
        action="store_true",
        help=(
            "push the image to the registry its tag names once built, with the "
            "docker CLI's credentials (docker login)"
        ),
    )
    _add_labels(build, "add a label to the image")
    _add_host(build)

    ps = commands.add_parser(
        "ps", help="list the worker containers discovery sees", description=None
    )
    ps.set_defaults(command="ps")
    ps.add_argument("--network", help="only workers on this network, addressed on it")
    _add_labels(ps, "selector label (default: wool.worker=true)")
    _add_host(ps)

    prune = commands.add_parser(
        "prune",
        help="remove your worker containers whose owner process is gone",
        description=(
            "Remove the worker containers that DockerWorker created for your "
            "user (the uid in their wool.docker.owner label) and whose owner "
            "process is gone. Owners on other machines, boots or pid "
            "namespaces count as alive."
        ),
    )
    prune.set_defaults(command="prune")
    prune.add_argument(
        "--all",
        action="store_true",
        help="remove all of your worker containers, live owners' too",
    )
    prune.add_argument(
        "--any-user",
        action="store_true",
        help=(
            "every user's worker containers, not only yours (for root cleaning "
            "up; also those whose user cannot be told, from older wool-docker)"
        ),
    )
    _add_labels(prune, "only containers carrying this label")
    _add_host(prune)
    return parser


def _add_host(parser: argparse.ArgumentParser) -> None:
    """Add the ``--host`` option every command that talks to the Engine takes.

    :param parser:
        The command's subparser.
    """
    parser.add_argument(
        "-H",
        "--host",
        metavar="DOCKER_HOST",
        help="Docker Engine address (default: $DOCKER_HOST or the local socket)",
    )


def _add_labels(parser: argparse.ArgumentParser, meaning: str) -> None:
    """Add the repeatable ``--label KEY=VALUE`` option.

    :param parser:
        The command's subparser.
    :param meaning:
        What a label does for this command.
    """
    parser.add_argument(
        "--label",
        metavar="KEY=VALUE",
        type=_label,
        action="append",
        default=[],
        help=f"{meaning}; repeatable",
    )


def _label(text: str) -> tuple[str, str]:
    """Parse ``KEY=VALUE`` for `argparse`.

    :param text:
        The argument.
    :returns:
        The key and value.
    :raises argparse.ArgumentTypeError:
        If there is no ``=`` or the key is empty.
    """
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def _port(text: str) -> int:
    """Parse a port number for `argparse`.

    :param text:
        The argument.
    :returns:
        The port.
    :raises argparse.ArgumentTypeError:
        If it is not an integer between 1 and 65535 (the native core's rule).
    """
    try:
        return _native.check_port(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _configure_logging(level: int) -> None:
    """Send this package's log records to standard error.

    The handler looks up `sys.stderr` when it writes, so it follows any
    redirection, and calling this again replaces it rather than adding
    another.

    :param level:
        The lowest level shown; progress is logged at ``INFO``.
    """
    logger = logging.getLogger("wool_docker")
    for handler in list(logger.handlers):
        if isinstance(handler, _StderrHandler):
            logger.removeHandler(handler)
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter(f"{_PROGRAM}: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(level)


class _StderrHandler(logging.StreamHandler):
    """A stream handler that always writes to the current `sys.stderr`."""

    @property
    def stream(self) -> TextIO:
        """The current `sys.stderr`."""
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        """Ignore the stream `logging.StreamHandler` sets up."""


def _print_error(error: BaseException) -> None:
    """Print an error the way `argparse` prints usage errors.

    :param error:
        The error.
    """
    print(f"{_PROGRAM}: error: {error}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
