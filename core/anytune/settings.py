"""Where anytune keeps its state: one home folder and one database URL, both overridable by environment."""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path


def anytune_home() -> Path:
    """`$ANYTUNE_HOME`, or `~/.anytune`. Created on first use."""
    home = Path(os.environ.get("ANYTUNE_HOME") or Path.home() / ".anytune").expanduser()
    home.mkdir(parents=True, exist_ok=True)
    return home


def database_url() -> str:
    """`$ANYTUNE_DATABASE_URL` (any SQLAlchemy URL, e.g. PostgreSQL), or SQLite inside the home folder."""
    url = os.environ.get("ANYTUNE_DATABASE_URL")
    if url:
        return url
    return f"sqlite:///{anytune_home() / 'registry.db'}"


def current_project() -> str:
    """`$ANYTUNE_PROJECT`, or `default`: the project this machine's registry is seen from (a server's
    tokens each see their own, whatever this says)."""
    return os.environ.get("ANYTUNE_PROJECT") or "default"


def cache_dir(*parts: str) -> Path:
    """A folder under the home for things that can be rebuilt (converted models, tiny models)."""
    path = anytune_home().joinpath("cache", *parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def today() -> date:
    """Today, or `$ANYTUNE_TODAY` (YYYY-MM-DD): availability windows and prices can be checked as of a date."""
    override = os.environ.get("ANYTUNE_TODAY")
    return date.fromisoformat(override) if override else date.today()
