"""The range of external ports a NAT hands out, which is what gets probed."""

from __future__ import annotations

from dataclasses import dataclass

from natkit.errors import LocalProtocolError


@dataclass(frozen=True, slots=True)
class PortRange:
    """Ports ``low`` to ``high``, both included.

    The default, 1-65535, is the whole space the reference figures use;
    Linux NATs often allocate from 1024-65535 or the ephemeral range.
    """

    low: int = 1
    high: int = 65535

    def __post_init__(self) -> None:
        if not 1 <= self.low <= self.high <= 0xFFFF:
            raise LocalProtocolError(f"bad port range {self.low}-{self.high}")

    @property
    def size(self) -> int:
        """How many ports the range holds (N in the model)."""
        return self.high - self.low + 1

    def __contains__(self, port: object) -> bool:
        return isinstance(port, int) and self.low <= port <= self.high

    def __str__(self) -> str:
        return f"{self.low}-{self.high}"

    @classmethod
    def parse(cls, text: str) -> PortRange:
        """``LO-HI`` (e.g. ``1024-65535``)."""
        low, sep, high = text.strip().partition("-")
        if not sep or not low.strip().isdigit() or not high.strip().isdigit():
            raise LocalProtocolError(f"port range must be LO-HI, got {text!r}")
        return cls(int(low), int(high))


#: Every port: the range the reference figures assume.
FULL_RANGE = PortRange()
