"""Typed readers for environment variables.

Every setting the product takes from the environment goes through one of these helpers, so a bad
value is refused at start-up with a message that names the variable, instead of surfacing later as
a traceback somewhere else.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit


class ConfigError(ValueError):
    """A setting taken from the environment has a value the product cannot use."""

    def __init__(self, name: str, value: str, expected: str) -> None:
        self.name = name
        self.value = value
        super().__init__(f"{name}={value!r} is not valid: expected {expected}")


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _raw(name: str, environ: Mapping[str, str] | None) -> str | None:
    value = (os.environ if environ is None else environ).get(name)
    return None if value is None else value.strip()


def env_str(name: str, default: str = "", environ: Mapping[str, str] | None = None) -> str:
    value = _raw(name, environ)
    return default if value is None or value == "" else value


def env_bool(name: str, default: bool = False, environ: Mapping[str, str] | None = None) -> bool:
    value = _raw(name, environ)
    if value is None:
        return default
    lowered = value.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ConfigError(name, value, "one of 1/0, true/false, yes/no, on/off")


def env_int(
    name: str,
    default: int,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
    environ: Mapping[str, str] | None = None,
) -> int:
    value = _raw(name, environ)
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(name, value, "an integer") from None
    if minimum is not None and number < minimum:
        raise ConfigError(name, value, f"an integer ≥ {minimum}")
    if maximum is not None and number > maximum:
        raise ConfigError(name, value, f"an integer ≤ {maximum}")
    return number


def env_float(
    name: str,
    default: float,
    *,
    minimum: float | None = None,
    environ: Mapping[str, str] | None = None,
) -> float:
    value = _raw(name, environ)
    if value is None or value == "":
        return default
    try:
        number = float(value)
    except ValueError:
        raise ConfigError(name, value, "a number") from None
    if number != number or number in (float("inf"), float("-inf")):
        raise ConfigError(name, value, "a finite number")
    if minimum is not None and number < minimum:
        raise ConfigError(name, value, f"a number ≥ {minimum}")
    return number


def env_list(name: str, default: list[str], environ: Mapping[str, str] | None = None) -> list[str]:
    value = _raw(name, environ)
    if value is None or value == "":
        return list(default)
    return [item.strip() for item in value.split(",") if item.strip()]


def env_path(name: str, default: Path, environ: Mapping[str, str] | None = None) -> Path:
    value = _raw(name, environ)
    if value is None or value == "":
        return default.resolve()
    if "\x00" in value:
        raise ConfigError(name, value, "a filesystem path")
    return Path(value).expanduser().resolve()


def env_url(
    name: str, schemes: tuple[str, ...], environ: Mapping[str, str] | None = None
) -> str | None:
    """A URL whose scheme is one of ``schemes``, or None when unset."""
    value = _raw(name, environ)
    if value is None or value == "":
        return None
    parts = urlsplit(value)
    if parts.scheme not in schemes or not (parts.netloc or parts.path):
        raise ConfigError(
            name, value, f"a URL starting with {' or '.join(s + '://' for s in schemes)}"
        )
    return value


def env_host(name: str, default: str, environ: Mapping[str, str] | None = None) -> str:
    """An address to bind: an IP address or a host name."""
    value = env_str(name, default, environ)
    try:
        ipaddress.ip_address(value)
    except ValueError:
        if not value.replace("-", "").replace(".", "").isalnum():
            raise ConfigError(name, value, "an IP address or host name") from None
    return value


def is_loopback(host: str) -> bool:
    """True when binding ``host`` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
