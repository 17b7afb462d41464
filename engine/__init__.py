"""coro's engine: everything that runs jobs, with no user interface.

Importing ``engine`` is cheap: it never imports ``textual``, and ``anthropic`` / ``mcp`` are
imported only when a phase first needs them.
"""

from __future__ import annotations

from engine._version import __version__
from engine.errors import CoroError

__all__ = ["CoroError", "__version__"]
