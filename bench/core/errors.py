"""Errors that mean "the user asked for something invalid": reported as one line, exit code 2."""

from __future__ import annotations


class ConfigError(ValueError):
    """An invalid configuration value, named by its config key."""


def config_error(exc: BaseException | None) -> ConfigError | None:
    """The ConfigError behind ``exc`` (Hydra wraps errors raised in constructors), if any."""
    while exc is not None:
        if isinstance(exc, ConfigError):
            return exc
        exc = exc.__cause__
    return None


class SettingError(ConfigError):
    """A ConfigError found by checking the composed config before any work (``bench.run.validation``): the
    cell never started, so nothing of it is kept."""


def check_fraction(key: str, value: object, low_closed: bool = False, high_closed: bool = True) -> float:
    """``value`` as a float inside (0, 1) with the given closed ends, else a ConfigError naming ``key``."""
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConfigError(f"{key} must be a number, got {value!r}") from None
    ok_low = v >= 0 if low_closed else v > 0
    ok_high = v <= 1 if high_closed else v < 1
    if not (ok_low and ok_high):
        interval = f"{'[' if low_closed else '('}0, 1{']' if high_closed else ')'}"
        raise ConfigError(f"{key} must be in {interval}, got {value}")
    return v
