"""``python -m coro_tui`` runs the ``coro`` command."""

from coro_tui._entry import main

main()
