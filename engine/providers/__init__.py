"""The built-in executors, one subpackage per model provider.

Each registers through the ``coro.executors`` entry-point group (see :mod:`engine.executors`),
so nothing here is imported until a phase asks for its provider.
"""
