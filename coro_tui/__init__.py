"""coro's user interface: the ``coro`` command line and (soon) the full-screen Textual TUI.

This is the only package that may import ``textual``.
"""
