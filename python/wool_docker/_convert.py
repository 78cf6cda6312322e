"""Conversions between wool's types and what crosses into the native core.

The native core speaks plain values and JSON text; wool speaks `WorkerMetadata`
and `ChannelOptions`. These helpers are the only translation between the two.
The rules for ``extra`` and the port are the native core's
(``_native.check_extra``, ``_native.check_port``); the fields of channel
options are wool's dataclass, checked here by `channel_options`.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import grpc
from wool.runtime.worker.base import ChannelOptions
from wool.runtime.worker.metadata import WorkerMetadata


def options_fields(options: ChannelOptions) -> dict[str, Any]:
    """Channel options as the fields of the ``wool.options`` label.

    :param options:
        The options a worker advertises.
    :returns:
        Field names to values; ``compression`` is grpc's integer value.
    """
    fields = dataclasses.asdict(options)
    fields["compression"] = int(options.compression.value)
    return fields


def options_from_json(text: str | None) -> ChannelOptions:
    """Parse the ``wool.options`` label; unknown keys are ignored.

    :param text:
        JSON object text, or ``None`` for the defaults.
    :returns:
        The channel options.
    :raises ValueError:
        If a field has the wrong type.
    """
    if not text:
        return ChannelOptions()
    raw = json.loads(text)
    if not isinstance(raw, dict):
        raise ValueError(f"channel options must be a JSON object, got {text!r}")
    return channel_options(raw)


def channel_options(raw: Mapping[str, Any], *, strict: bool = False) -> ChannelOptions:
    """Build `ChannelOptions` from decoded JSON fields: the one parser of them,
    for labels (``wool.options``) and the worker image's ``WOOL_OPTIONS`` alike.

    :param raw:
        Field names to values; ``compression`` is grpc's integer value or a
        member name (any case).
    :param strict:
        Reject a field `ChannelOptions` does not have (a configuration we
        wrote ourselves) instead of ignoring it (a label a newer writer may
        have written).
    :returns:
        The channel options.
    :raises ValueError:
        For a value of the wrong type, an unknown field when ``strict``, or
        options wool rejects.
    """
    defaults = ChannelOptions()
    names = [f.name for f in dataclasses.fields(ChannelOptions)]
    if strict and (unknown := [k for k in raw if k not in names]):
        raise ValueError(
            f"unknown option {unknown[0]!r}; expected some of {', '.join(names)}"
        )
    fields: dict[str, Any] = {}
    for name in names:
        if name not in raw:
            continue
        value = raw[name]
        if name == "compression":
            fields[name] = _compression(value)
            continue
        expected = type(getattr(defaults, name))
        # bool is an int in Python; keep the two apart as the label's author meant.
        if type(value) is not expected:
            raise ValueError(
                f"channel option {name} must be {expected.__name__}, got {value!r}"
            )
        fields[name] = value
    return ChannelOptions(**fields)


def _compression(value: Any) -> grpc.Compression:
    """A grpc compression from its integer value or (case-insensitive) name."""
    if isinstance(value, str):
        for member in grpc.Compression:
            if member.name.lower() == value.lower():
                return member
    elif isinstance(value, int) and not isinstance(value, bool):
        try:
            return grpc.Compression(value)
        except ValueError:
            pass
    names = ", ".join(m.name for m in grpc.Compression)
    raise ValueError(f"unknown compression {value!r}; use one of {names}")


def metadata_from_record(record: Mapping[str, Any]) -> WorkerMetadata:
    """Build wool's `WorkerMetadata` from a native worker record.

    :param record:
        A record as the native core reports it (``uid``, ``address``,
        ``version``, ``tags``, ``extra``, ``secure``, ``identity``,
        ``options``, and an optional ``pid``).
    :returns:
        The worker's metadata.
    """
    return WorkerMetadata(
        uid=uuid.UUID(record["uid"]),
        address=record["address"],
        pid=int(record.get("pid") or 0),
        version=record["version"],
        tags=frozenset(record["tags"]),
        extra=MappingProxyType(json.loads(record["extra"] or "{}")),
        secure=bool(record["secure"]),
        options=options_from_json(record.get("options")),
        identity=record.get("identity"),
    )
