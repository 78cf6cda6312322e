"""Tests for the entry point's stop control: stdin commands and the stopper."""

from __future__ import annotations

import pytest

from wool_docker._entrypoint import control


@pytest.mark.parametrize(
    ("line", "grace"),
    [("stop 0", 0.0), ("stop -1", -1.0), ("  stop 2.5  ", 2.5), ("", None)],
)
def test_parse_control_line_with_valid_line(line: str, grace: float | None):
    """Test parsing a valid owner command.

    Given:
        A stop command or a blank line
    When:
        It is parsed
    Then:
        It should return the grace, or None for the blank line
    """
    # Act & assert
    assert control.parse_control_line(line) == grace


@pytest.mark.parametrize("line", ["stop", "stop now", "stop nan", "halt 0"])
def test_parse_control_line_with_invalid_line(line: str):
    """Test parsing a line that is not a command.

    Given:
        A line that is not "stop <grace>"
    When:
        It is parsed
    Then:
        It should raise ValueError
    """
    # Act & assert
    with pytest.raises(ValueError):
        control.parse_control_line(line)


def test_stopper_request_schedules_before_it_logs(mocker):
    """Test that a stop does not wait on the worker's own log output.

    Given:
        A `Stopper` and a logger whose output would block (a routine holds
        the container's stderr: a full pipe, an owner slow to read)
    When:
        A stop is requested
    Then:
        The stop should be scheduled before anything is logged
    """
    # Arrange
    order = mocker.Mock()
    mocker.patch.object(control.logger, "info", order.log)
    stopper = control.Stopper(mocker.Mock(), mocker.Mock(), order.schedule)

    # Act
    stopper.request(0.0, "stdin 'stop 0'")

    # Assert
    assert [c[0] for c in order.mock_calls] == ["schedule", "log"]
