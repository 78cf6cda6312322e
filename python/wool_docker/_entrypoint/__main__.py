"""``python3 -m wool_docker._entrypoint``: the worker image's ``ENTRYPOINT``."""

import sys

from wool_docker._entrypoint import main

sys.exit(main())
