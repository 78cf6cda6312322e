"""wool-docker benchmarks: ``python -m bench.run`` (``scripts/bench.sh``)."""
