"""The seed's import paths for a wool that does not ship them.

``wool.runtime.worker.docker`` and ``wool.runtime.discovery.docker`` belong in
wool's own package (``upstream/wool`` holds that change). Until the installed
wool has them, this finder serves them, re-exporting `DockerWorker` and
`DockerDiscovery`, so wool-docker never writes a file into wool's package.

``wool_docker.pth`` imports this module at interpreter start-up; it only
appends a finder to `sys.meta_path`, whose finders are asked in order, so a
wool that has its own modules is always found first and this finder is never
asked. Keep it tiny: every interpreter in the environment pays for its import.
"""

import sys

_SERVED = {
    "wool.runtime.worker.docker": ("wool_docker.worker", "DockerWorker"),
    "wool.runtime.discovery.docker": ("wool_docker.discovery", "DockerDiscovery"),
}
"""Module served to where its public name comes from."""


class SeedFinder:
    """Finder and loader of the seed's modules, asked after every other finder."""

    @classmethod
    def find_spec(cls, fullname, path=None, target=None):
        """A spec for one of the seed's modules; ``None`` for anything else."""
        if fullname not in _SERVED:
            return None
        from importlib.machinery import ModuleSpec

        return ModuleSpec(fullname, cls, origin="wool-docker")

    @staticmethod
    def create_module(spec):
        """Use the default module."""
        return None

    @staticmethod
    def exec_module(module):
        """Re-export the public name from wool-docker."""
        from importlib import import_module

        source, name = _SERVED[module.__name__]
        module.__doc__ = f"`{name}` from `{source}`, served by wool-docker."
        module.__all__ = [name]
        setattr(module, name, getattr(import_module(source), name))


if SeedFinder not in sys.meta_path:
    sys.meta_path.append(SeedFinder)
