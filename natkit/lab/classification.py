"""What a NAT classifier should report for a lab scenario.

The vocabulary is RFC 4787's (mapping §4.1, filtering §5, port assignment
§4.2, hairpinning §6), in the classifier's own enums, whose values are the
strings of its JSON report, so a test can compare the two with
:meth:`Classification.mismatches` and nothing else.

"Not tested" and "no" are different answers (see STYLE.md): ``hairpin`` is
``None`` when the question does not apply (no NAT) or could not be asked
(UDP blocked), and the enums carry an explicit ``UNKNOWN``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from natkit.probe.report import FilteringBehavior, MappingBehavior, PortAllocation

# The enums are re-exported: the lab speaks the classifier's vocabulary, defined once.
__all__ = ["Classification", "FilteringBehavior", "JsonValue", "MappingBehavior", "PortAllocation"]

#: The JSON value type of one classification field.
JsonValue = str | bool | None


@dataclass(frozen=True, slots=True)
class Classification:
    """One NAT classification, flat, in the shape of natkit's JSON report."""

    mapping: MappingBehavior
    filtering: FilteringBehavior
    hairpin: bool | None
    """``None``: not applicable (no NAT) or not determinable (UDP blocked)."""
    port_allocation: PortAllocation
    udp_blocked: bool
    behind_nat: bool | None
    """``None`` when no STUN answer came back, so it cannot be told."""

    def as_json(self) -> dict[str, JsonValue]:
        """The classification with natkit's JSON field names and values."""
        return {
            "mapping": self.mapping.value,
            "filtering": self.filtering.value,
            "hairpin": self.hairpin,
            "port_allocation": self.port_allocation.value,
            "udp_blocked": self.udp_blocked,
            "behind_nat": self.behind_nat,
        }

    def mismatches(self, report: Mapping[str, object]) -> list[str]:
        """Fields of a JSON ``report`` that differ from this one, as readable lines.

        Keys of ``report`` that are not classification fields are ignored; a
        missing field counts as a mismatch. An empty list means agreement.
        """
        problems: list[str] = []
        for key, want in self.as_json().items():
            if key not in report:
                problems.append(f"{key}: missing, expected {want!r}")
            elif report[key] != want:
                problems.append(f"{key}: got {report[key]!r}, expected {want!r}")
        return problems

    @classmethod
    def udp_blocked_result(cls, *, behind_nat: bool | None) -> Classification:
        """The only honest answer when no UDP gets through at all; whether the
        host is NATed can still be seen over TCP."""
        return cls(
            mapping=MappingBehavior.UNKNOWN,
            filtering=FilteringBehavior.UNKNOWN,
            hairpin=None,
            port_allocation=PortAllocation.UNKNOWN,
            udp_blocked=True,
            behind_nat=behind_nat,
        )
