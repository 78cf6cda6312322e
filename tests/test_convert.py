"""Tests for `wool_docker._convert`, without a Docker Engine."""

from __future__ import annotations

import json
import uuid
from types import MappingProxyType

import grpc
import pytest
from hypothesis import given
from hypothesis import strategies as st
from wool.runtime.worker.base import ChannelOptions
from wool.runtime.worker.metadata import WorkerMetadata

from wool_docker._convert import metadata_from_record
from wool_docker._convert import options_fields
from wool_docker._convert import options_from_json

channel_options = st.builds(
    ChannelOptions,
    max_receive_message_length=st.integers(),
    max_send_message_length=st.integers(),
    keepalive_time_ms=st.integers(),
    keepalive_timeout_ms=st.integers(),
    keepalive_permit_without_calls=st.booleans(),
    max_pings_without_data=st.integers(),
    max_concurrent_streams=st.integers(),
    compression=st.sampled_from(grpc.Compression),
)
"""Any `ChannelOptions`, with integers beyond what gRPC would accept."""

string_maps = st.dictionaries(st.text(), st.text())
"""Any string-to-string mapping, as wool carries ``extra``."""

worker_metadata = st.builds(
    WorkerMetadata,
    uid=st.uuids(),
    address=st.text(),
    pid=st.integers(min_value=0, max_value=2**31 - 1),
    version=st.text(),
    tags=st.frozensets(st.text()),
    extra=string_maps.map(MappingProxyType),
    secure=st.booleans(),
    options=channel_options,
    identity=st.none() | st.text(),
)
"""Any `WorkerMetadata` a worker record can carry."""


def _record(metadata: WorkerMetadata) -> dict:
    """The native record of a worker with ``metadata``."""
    return {
        "uid": str(metadata.uid),
        "address": metadata.address,
        "pid": metadata.pid,
        "version": metadata.version,
        "tags": sorted(metadata.tags),
        "extra": json.dumps(dict(metadata.extra)),
        "secure": metadata.secure,
        "identity": metadata.identity,
        "options": json.dumps(options_fields(metadata.options)),
        "container_id": "0123456789ab",
        "container_name": "wool-worker-0123456789ab",
        "network": "wool",
    }


def test_options_fields_with_default_options():
    """Test the fields of the default channel options.

    Given:
        Default `ChannelOptions`
    When:
        `options_fields` is called
    Then:
        It should return one JSON-ready entry per field
    """
    # Arrange
    options = ChannelOptions()

    # Act
    fields = options_fields(options)

    # Assert
    assert set(fields) == set(ChannelOptions.__dataclass_fields__)
    assert json.loads(json.dumps(fields)) == fields


def test_options_fields_with_compression():
    """Test the field of a compression algorithm.

    Given:
        `ChannelOptions` with gzip compression
    When:
        `options_fields` is called
    Then:
        It should carry grpc's integer value of the algorithm
    """
    # Arrange
    options = ChannelOptions(compression=grpc.Compression.Gzip)

    # Act
    fields = options_fields(options)

    # Assert
    assert fields["compression"] == grpc.Compression.Gzip.value


@pytest.mark.parametrize("text", [None, ""], ids=["none", "empty"])
def test_options_from_json_without_text(text):
    """Test parsing an absent ``wool.options`` label.

    Given:
        ``None`` or an empty string
    When:
        `options_from_json` is called
    Then:
        It should return the default `ChannelOptions`
    """
    # Act
    options = options_from_json(text)

    # Assert
    assert options == ChannelOptions()


def test_options_from_json_with_partial_object():
    """Test parsing options that name only some fields.

    Given:
        A JSON object with only ``max_concurrent_streams``
    When:
        `options_from_json` is called
    Then:
        It should take that field and default the others
    """
    # Act
    options = options_from_json('{"max_concurrent_streams":10}')

    # Assert
    assert options == ChannelOptions(max_concurrent_streams=10)


def test_options_from_json_with_unknown_keys():
    """Test parsing options from a newer writer.

    Given:
        A JSON object with a key `ChannelOptions` does not have
    When:
        `options_from_json` is called
    Then:
        It should ignore that key
    """
    # Act
    options = options_from_json('{"max_concurrent_streams":10,"future_knob":1}')

    # Assert
    assert options == ChannelOptions(max_concurrent_streams=10)


def test_options_from_json_with_compression_name():
    """Test parsing a compression algorithm given by name.

    Given:
        A JSON object whose ``compression`` is the name ``"Gzip"``
    When:
        `options_from_json` is called
    Then:
        It should return options with gzip compression
    """
    # Act
    options = options_from_json('{"compression":"Gzip"}')

    # Assert
    assert options.compression is grpc.Compression.Gzip


def test_options_from_json_with_unknown_compression_value():
    """Test parsing a compression number grpc does not define.

    Given:
        A JSON object whose ``compression`` is 99
    When:
        `options_from_json` is called
    Then:
        It should raise `ValueError`
    """
    # Act & assert
    with pytest.raises(ValueError):
        options_from_json('{"compression":99}')


def test_options_from_json_with_unknown_compression_name():
    """Test parsing a compression name grpc does not define.

    Given:
        A JSON object whose ``compression`` is ``"zstd"``, which grpc does
        not define
    When:
        `options_from_json` is called
    Then:
        It should raise `ValueError`
    """
    # Act & assert
    with pytest.raises(ValueError):
        options_from_json('{"compression":"zstd"}')


def test_options_from_json_with_wrong_field_type():
    """Test parsing a field of the wrong type.

    Given:
        A JSON object whose ``max_concurrent_streams`` is the string ``"many"``
    When:
        `options_from_json` is called
    Then:
        It should raise `ValueError`
    """
    # Act & assert
    with pytest.raises(ValueError):
        options_from_json('{"max_concurrent_streams":"many"}')


@given(options=channel_options)
def test_options_from_json_with_arbitrary_options(options):
    """Test the ``wool.options`` round trip.

    Given:
        Any `ChannelOptions`
    When:
        Their `options_fields` are written as JSON and parsed by
        `options_from_json`
    Then:
        It should return options equal to the original
    """
    # Act
    result = options_from_json(json.dumps(options_fields(options)))

    # Assert
    assert result == options


def test_metadata_from_record_with_complete_record():
    """Test building metadata from a complete native record.

    Given:
        A record with every field a worker container's labels carry
    When:
        `metadata_from_record` is called
    Then:
        It should return `WorkerMetadata` with those values
    """
    # Arrange
    uid = uuid.uuid4()
    record = {
        "uid": str(uid),
        "address": "172.18.0.5:50051",
        "pid": 7,
        "version": "0.15.7",
        "tags": ["gpu", "fast"],
        "extra": '{"region":"eu"}',
        "secure": True,
        "identity": "worker.wool.test",
        "options": '{"max_concurrent_streams":10}',
    }

    # Act
    metadata = metadata_from_record(record)

    # Assert
    assert metadata == WorkerMetadata(
        uid=uid,
        address="172.18.0.5:50051",
        pid=7,
        version="0.15.7",
        tags=frozenset({"gpu", "fast"}),
        extra=MappingProxyType({"region": "eu"}),
        secure=True,
        options=ChannelOptions(max_concurrent_streams=10),
        identity="worker.wool.test",
    )


def test_metadata_from_record_with_minimal_record():
    """Test building metadata from a record without optional fields.

    Given:
        A record without ``pid``, ``identity`` or ``options``, and with empty
        ``extra``
    When:
        `metadata_from_record` is called
    Then:
        It should default pid to 0, identity to ``None``, options to the
        defaults and extra to an empty mapping
    """
    # Arrange
    uid = uuid.uuid4()
    record = {
        "uid": str(uid),
        "address": "172.18.0.5:50051",
        "version": "0.15.7",
        "tags": [],
        "extra": "",
        "secure": False,
    }

    # Act
    metadata = metadata_from_record(record)

    # Assert
    assert metadata == WorkerMetadata(
        uid=uid, address="172.18.0.5:50051", pid=0, version="0.15.7"
    )


def test_metadata_from_record_with_null_pid():
    """Test building metadata from a record whose pid is unknown.

    Given:
        A record whose ``pid`` is ``None``
    When:
        `metadata_from_record` is called
    Then:
        It should set pid to 0
    """
    # Arrange
    record = {
        "uid": str(uuid.uuid4()),
        "address": "172.18.0.5:50051",
        "pid": None,
        "version": "0.15.7",
        "tags": [],
        "extra": "{}",
        "secure": False,
    }

    # Act
    metadata = metadata_from_record(record)

    # Assert
    assert metadata.pid == 0


@given(metadata=worker_metadata)
def test_metadata_from_record_with_arbitrary_metadata(metadata):
    """Test the worker record round trip.

    Given:
        Any `WorkerMetadata` a worker record can carry
    When:
        A native record is built from its values and passed to
        `metadata_from_record`
    Then:
        It should return metadata whose fields all equal the original's
    """
    # Act
    result = metadata_from_record(_record(metadata))

    # Assert
    assert (
        result.uid,
        result.address,
        result.pid,
        result.version,
        result.tags,
        dict(result.extra),
        result.secure,
        result.options,
        result.identity,
    ) == (
        metadata.uid,
        metadata.address,
        metadata.pid,
        metadata.version,
        metadata.tags,
        dict(metadata.extra),
        metadata.secure,
        metadata.options,
        metadata.identity,
    )
