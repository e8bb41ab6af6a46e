"""Types and ranges of configuration keys, declared once beside the code that reads them.

A plug-in's constructor (or model function) annotates each parameter; ``bench.run.validation`` reads the
annotations and checks the composed config before any data is loaded. Numbers are checked against a
``Range`` given with ``typing.Annotated`` (``Fraction``, ``Positive``, ...) and are otherwise >= 0 (no
setting of this project is negative); ``Literal`` types are enumerations.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated


@dataclass(frozen=True)
class Range:
    """The interval a number must lie in; ``None`` = unbounded on that side."""

    low: float | None = 0
    high: float | None = None
    low_closed: bool = True
    high_closed: bool = True

    def contains(self, value: float) -> bool:
        if self.low is not None and (value < self.low or (value == self.low and not self.low_closed)):
            return False
        return self.high is None or not (value > self.high or (value == self.high and not self.high_closed))

    def __str__(self) -> str:
        low = "-inf" if self.low is None else f"{self.low:g}"
        high = "inf" if self.high is None else f"{self.high:g}"
        left = "[" if self.low_closed and self.low is not None else "("
        right = "]" if self.high_closed and self.high is not None else ")"
        return f"{left}{low}, {high}{right}"

    def outside(self) -> float:
        """A value just outside the range (for tests that must see it refused)."""
        if self.low is not None:
            return self.low if not self.low_closed else self.low - 1
        assert self.high is not None
        return self.high if not self.high_closed else self.high + 1


NON_NEGATIVE = Range()  # what every number is unless annotated otherwise

Positive = Annotated[float, Range(0, low_closed=False)]
PositiveInt = Annotated[int, Range(1)]
Fraction = Annotated[float, Range(0, 1, low_closed=False)]  # (0, 1]: rates, ratios
OpenFraction = Annotated[float, Range(0, 1, low_closed=False, high_closed=False)]  # (0, 1)
UnitInterval = Annotated[float, Range(0, 1)]  # [0, 1]
PixelLevel = Annotated[float, Range(0, 255, low_closed=False)]  # (0, 255]: an intensity in pixel levels
