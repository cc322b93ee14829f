"""Build the optional C accelerator; everything else is configured in pyproject.toml.

The extension is optional: without a working C compiler (or Python headers) the build warns
and goes on, and the package runs on its pure-Python core. ``TIDINGS_NO_EXTENSIONS=1`` at
build time skips the extension altogether.
"""

from __future__ import annotations

import os

from setuptools import Extension, setup

extensions = []
if os.environ.get("TIDINGS_NO_EXTENSIONS", "") in ("", "0"):
    extensions.append(Extension("tidings._speedups", ["src/tidings/_speedups.c"], optional=True))

setup(ext_modules=extensions)
