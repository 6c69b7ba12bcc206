"""INI strings to constructor values: the helpers of runner and tasklist classes (plugin API).

Every key of an INI definition reaches the class's constructor as a string; these turn the
strings into what the class needs.
"""

from __future__ import annotations

from .errors import ConfigError

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0", ""}


def flag(value: bool | str, name: str) -> bool:
    """An INI boolean (``True``/``False``, ``yes``/``no``, ``1``/``0``, ``on``/``off``).

    Raises:
        ConfigError: ``value`` is none of those.
    """
    if isinstance(value, bool):
        return value
    text = value.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ConfigError(f"{name} = {value!r}: expected True or False")


def words(value: str) -> list[str]:
    """A space-separated INI list (``volumes = /a:/a /b:/b``) as a list."""
    return value.split()
