"""Tests for the entry point's server setup."""

from __future__ import annotations

from wool_docker._entrypoint import serve


def test_worker_options_with_compression_name():
    """Test WOOL_OPTIONS naming a compression algorithm.

    Given:
        Channel options with compression given by name and a size limit
    When:
        wool's WorkerOptions are built from them
    Then:
        It should carry the matching grpc.Compression member and the limit
    """
    # Arrange
    import grpc

    # Act
    options = serve.worker_options(
        {"compression": "Gzip", "max_send_message_length": 1024}
    )

    # Assert
    assert options.channel.compression is grpc.Compression.Gzip
    assert options.channel.max_send_message_length == 1024
