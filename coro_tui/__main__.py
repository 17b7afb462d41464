"""``python -m coro_tui`` runs the ``coro`` command line."""

from coro_tui.cli import main

main()
