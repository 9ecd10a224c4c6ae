"""Third-party modules imported without the DeprecationWarnings that their own imports raise.

Some packages valle2 uses import modules their upstreams have deprecated: pyworld (the offline
codec) and webrtcvad (under resemblyzer) import ``pkg_resources``, resemblyzer imports
``scipy.ndimage.morphology``, and audioread (lhotse's fallback reader) the standard library's
``aifc``, ``audioop`` and ``sunau``.  valle2 cannot change that code and uses none of those
modules itself; :func:`import_quietly` imports such a package with exactly those warnings
filtered, so that neither users nor the test suite (which fails on any warning) see them.
"""
from __future__ import annotations

import importlib
import warnings
from types import ModuleType

UPSTREAM_DEPRECATIONS = (r"pkg_resources is deprecated", r"Please import `binary_dilation`",
                         r"'(aifc|audioop|sunau)' is deprecated")


def import_quietly(name: str) -> ModuleType:
    """``importlib.import_module(name)`` with :data:`UPSTREAM_DEPRECATIONS` filtered (a module
    already imported comes back at once)."""
    with warnings.catch_warnings():
        for message in UPSTREAM_DEPRECATIONS:
            warnings.filterwarnings("ignore", message=message, category=DeprecationWarning)
        return importlib.import_module(name)
