"""The admin API's bearer token: a random secret in the state dir, readable by root only."""

from __future__ import annotations

import os
from pathlib import Path

from state.credentials import new_token

TOKEN_FILE = "admin.token"


def token_path(state_dir: Path) -> Path:
    return state_dir / TOKEN_FILE


def ensure_token(state_dir: Path) -> str:
    """Return the token, creating it (mode 0600, written atomically) on first start."""
    path = token_path(state_dir)
    try:
        token = path.read_text().strip()
        if token:
            return token
    except FileNotFoundError:
        pass
    return replace_token(state_dir)


def replace_token(state_dir: Path) -> str:
    """A new token in the file (the old one ends: the daemon replaces it when it saw it in clear)."""
    path = token_path(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    token = new_token()  # state.credentials: the one strength
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, (token + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return token


def read_token(state_dir: Path) -> str | None:
    try:
        return token_path(state_dir).read_text().strip() or None
    except OSError:
        return None
