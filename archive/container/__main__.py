"""``python -m squeezenet_mar.container``: the image's entrypoint (see the package docstring)."""

from __future__ import annotations

import sys

from . import main

sys.exit(main())
