"""Pairing a runner with a coro cloud server (team mode). Not built yet: see the open issues."""
