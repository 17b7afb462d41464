"""Credentials for ``git`` over HTTPS without writing them anywhere.

The header travels in ``GIT_CONFIG_COUNT``/``GIT_CONFIG_KEY_n``/``GIT_CONFIG_VALUE_n``
environment entries (git ≥ 2.31), which git reads as if they were ``-c`` options. Nothing lands
in ``.git/config``, in the remote URL or on the command line (where ``ps`` would show it).
"""

from __future__ import annotations

import base64

__all__ = ["basic_auth_env", "git_header_env"]


def git_header_env(header: str, value: str) -> dict[str, str]:
    """Environment entries making git send ``header: value`` with every HTTP request."""
    return {
        "GIT_CONFIG_COUNT": "1",
        "GIT_CONFIG_KEY_0": "http.extraHeader",
        "GIT_CONFIG_VALUE_0": f"{header}: {value}",
        "GIT_TERMINAL_PROMPT": "0",
    }


def basic_auth_env(username: str, password: str) -> dict[str, str]:
    """Environment entries for HTTP Basic auth (GitHub: ``x-access-token`` + a token;
    Bitbucket: a user name + an app password, or ``x-token-auth`` + an access token)."""
    pair = base64.b64encode(f"{username}:{password}".encode()).decode()
    return git_header_env("Authorization", f"Basic {pair}")
