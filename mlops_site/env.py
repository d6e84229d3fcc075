"""Typed readers for environment variables.

Each helper fails at start-up with ImproperlyConfigured naming the variable, so a
typo in a deployment surfaces before the first request rather than in the middle of a run.
"""

import os
import re
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (1/0, true/false), got {raw!r}")


def env_int(name: str, default: int, minimum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, got {value}")
    return value


def env_rate(name: str, default: str) -> str:
    """A request rate as DRF reads it: "<number>/second|minute|hour|day"."""
    raw = os.environ.get(name, default)
    if not re.fullmatch(r"[1-9][0-9]*/(second|minute|hour|day)", raw):
        raise ImproperlyConfigured(
            f"{name} must look like 600/minute (per second, minute, hour or day), got {raw!r}"
        )
    return raw


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_path(name: str, default: Path) -> Path:
    raw = os.environ.get(name)
    return Path(raw).expanduser().resolve() if raw else default


def env_database(name: str, default: str) -> dict:
    """A Django DATABASES entry from a URL such as mysql://user:pw@host:3306/db."""
    import dj_database_url

    raw = os.environ.get(name) or default
    try:
        config = dj_database_url.parse(raw, conn_max_age=60, conn_health_checks=True)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} is not a valid database URL: {exc}") from None
    # Timeouts turn a network partition into an error the worker retries and reports,
    # instead of a call that blocks the run's supervisor for minutes.
    if config["ENGINE"] == "django.db.backends.mysql":
        # utf8mb4 stores any text users paste; STRICT mode refuses silent truncation.
        config.setdefault("OPTIONS", {}).update(
            {
                "charset": "utf8mb4",
                "init_command": "SET sql_mode='STRICT_TRANS_TABLES'",
                "connect_timeout": 10,
                "read_timeout": 120,
                "write_timeout": 120,
            }
        )
        config["TEST"] = {"CHARSET": "utf8mb4", "COLLATION": "utf8mb4_unicode_ci"}
    elif config["ENGINE"] == "django.db.backends.postgresql":
        config.setdefault("OPTIONS", {}).setdefault("connect_timeout", 10)
    return config
