"""The traversal matrix for every pair of NAT types, beside the classic table.

    python -m natkit.simulations.traversal_matrix [--seed 1]

Runs :func:`natkit.simulations.traversal.traversal_matrix` (every method on every
ordered pair, in the simulator, with natkit's cores) and prints:

1. the first method that connects each pair when no NAT offers port
   mapping: STUN-only hole punching, else birthday probing, else relay;
2. every method's outcome per pair (port mapping granted by the row
   peer's NAT only);
3. the comparison with the classic type-pair table (full cone / restricted
   / port-restricted / symmetric, RFC 3489's names), flagging any pair where
   the simulation disagrees. The exit status is 1 if one does.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Mapping, Sequence
from enum import Enum

from natkit.birthday.planner import BirthdayScenario, Mode
from natkit.birthday.ports import FULL_RANGE
from natkit.simulations.traversal import (
    RATE,
    Attempt,
    BirthdayBudget,
    Method,
    NatType,
    Outcome,
    PairResult,
    is_hard,
    traversal_matrix,
)

Matrix = Mapping[tuple[NatType, NatType], PairResult]


class Classic(Enum):
    """What the classic type-pair table expects for a pair."""

    #: Hole punching to the STUN-mapped endpoints works.
    DIRECT = "direct (STUN)"
    #: Port-restricted cone with symmetric: only a birthday search (or a relay).
    BIRTHDAY = "birthday, one hard"
    #: Symmetric with symmetric: a both-hard birthday search, in practice a relay.
    RELAY = "both-hard birthday or relay"


#: RFC 3489's four NAT names (plus no NAT); it has no address-dependent
#: mapping, and counts any mapping that changes with the destination as
#: symmetric, so ADM is compared as symmetric.
CLASSIC_NAME: dict[NatType, NatType] = {t: t for t in NatType} | {
    NatType.ADDRESS_DEPENDENT: NatType.SYMMETRIC
}


def classic_expectation(a: NatType, b: NatType) -> Classic:
    """The classic table: STUN works unless a symmetric NAT meets a port-restricted
    or symmetric one (the symmetric side's new port is unknown, and the other
    side's filter admits only the port it was told)."""
    pair = {CLASSIC_NAME[a], CLASSIC_NAME[b]}
    if pair == {NatType.SYMMETRIC}:
        return Classic.RELAY
    if pair == {NatType.SYMMETRIC, NatType.PORT_RESTRICTED}:
        return Classic.BIRTHDAY
    return Classic.DIRECT


#: Which simulated outcomes count as agreeing with each classic expectation.
AGREES: dict[Classic, frozenset[Method]] = {
    Classic.DIRECT: frozenset({Method.STUN}),
    Classic.BIRTHDAY: frozenset({Method.BIRTHDAY_ONE_HARD}),
    Classic.RELAY: frozenset({Method.BIRTHDAY_BOTH_HARD, Method.RELAY}),
}

#: Why pairs come out as they do where the classic table is terse (shown
#: under the comparison, whether or not they agree).
NOTES: dict[frozenset[NatType], str] = {
    frozenset({NatType.SYMMETRIC, NatType.RESTRICTED}): (
        "symmetric ↔ restricted: STUN works although the symmetric side's port toward "
        "the peer is new: the restricted side's ADF admits any port of an address it "
        "sent to, and it answers the probe from wherever it came"
    ),
    frozenset({NatType.SYMMETRIC, NatType.FULL_CONE}): (
        "symmetric ↔ full cone: the full-cone side answers the symmetric side's probe "
        "at its new port; the birthday search ends at once for the same reason (an "
        "OPEN gets through, the prober probes its source)"
    ),
    frozenset({NatType.ADDRESS_DEPENDENT}): (
        "address-dependent ↔ address-dependent: ADM gives a socket one port for all of "
        "the peer's ports, yet after n probes per side the chance that the two sides' "
        "probes meet is still about n²/N², as with APDM"
    ),
}


def first_method_label(method: Method) -> str:
    return {
        Method.STUN: "STUN",
        Method.PORT_MAPPING: "MAP",
        Method.BIRTHDAY_ONE_HARD: "BDAY-1",
        Method.BIRTHDAY_BOTH_HARD: "BDAY-2",
        Method.RELAY: "RELAY",
    }[method]


def _mark(attempt: Attempt) -> str:
    return {Outcome.CONNECTED: "✓", Outcome.FAILED: "✗", Outcome.NOT_APPLICABLE: "·"}[
        attempt.outcome
    ]


def method_cell(result: PairResult) -> str:
    """``S✓ M✓ B1✓``: STUN, port mapping, birthday (1 or 2 hard sides)."""
    birthday = result.birthday
    hard_sides = "2" if birthday.method is Method.BIRTHDAY_BOTH_HARD else "1"
    if birthday.outcome is Outcome.NOT_APPLICABLE:
        hard_sides = ""
    return f"S{_mark(result.stun)} M{_mark(result.port_mapping)} B{hard_sides}{_mark(birthday)}"


#: Column headings (the rows carry the full names).
SHORT: dict[NatType, str] = {
    NatType.OPEN: "open",
    NatType.FULL_CONE: "full",
    NatType.RESTRICTED: "restr",
    NatType.PORT_RESTRICTED: "p-restr",
    NatType.ADDRESS_DEPENDENT: "addr-dep",
    NatType.SYMMETRIC: "sym",
}


def _row_label(nat_type: NatType) -> str:
    return f"{nat_type.value} ({nat_type.rfc4787})"


def render_grid(
    title: str, types: Sequence[NatType], cell: Mapping[tuple[NatType, NatType], str]
) -> str:
    """A row x column table of ``cell`` strings."""
    label_width = max(len(_row_label(t)) for t in types) + 1
    width = max(*(len(c) + 2 for c in cell.values()), *(len(SHORT[t]) + 2 for t in types))
    lines = [
        title,
        "A (row), B (column)".ljust(label_width) + "".join(f"{SHORT[t]:>{width}}" for t in types),
    ]
    lines.append("-" * len(lines[-1]))
    for a in types:
        lines.append(
            f"{_row_label(a):<{label_width}}" + "".join(f"{cell[(a, b)]:>{width}}" for b in types)
        )
    return "\n".join(lines)


def disagreements(matrix: Matrix) -> list[tuple[NatType, NatType, Classic, Method]]:
    """Pairs where the simulation's method is not what the classic table expects."""
    found = []
    for (a, b), result in matrix.items():
        expected = classic_expectation(a, b)
        if result.without_port_mapping not in AGREES[expected]:
            found.append((a, b, expected, result.without_port_mapping))
    return found


def render_comparison(matrix: Matrix) -> str:
    """The classic table's verdict per unordered pair, the simulation's, and notes."""
    types = list(dict.fromkeys(a for a, _ in matrix))
    lines = ["Comparison with the classic type-pair table (ADM compared as symmetric):"]
    lines.append(f"{'pair':<40} {'classic':<28} {'simulated':<14} verdict")
    for i, a in enumerate(types):
        for b in types[i:]:
            expected = classic_expectation(a, b)
            simulated = {matrix[(a, b)].without_port_mapping, matrix[(b, a)].without_port_mapping}
            verdict = "agree" if simulated <= AGREES[expected] else "DISAGREE"
            shown = ", ".join(sorted(first_method_label(m) for m in simulated))
            lines.append(
                f"{a.value + ' ↔ ' + b.value:<40} {expected.value:<28} {shown:<14} {verdict}"
            )
    wrong = disagreements(matrix)
    lines.append(
        f"{len(matrix) - len(wrong)} of {len(matrix)} ordered pairs agree with the classic table"
    )
    for a, b, expected, got in wrong:
        lines.append(
            f"  DISAGREES: {a.value} → {b.value}: classic {expected.value}, got {got.value}"
        )
    lines.append("Notes:")
    lines += [f"  - {note}" for note in NOTES.values()]
    return "\n".join(lines)


def render_birthday_footnote(matrix: Matrix, budget: BirthdayBudget) -> str:
    one, both = budget.one_hard(), budget.both_hard()
    sprayed, probes = budget.one_hard_probes, budget.both_hard_probes
    full = BirthdayScenario(budget.both_hard_ports, FULL_RANGE, Mode.BOTH_HARD, RATE).probes_for(
        0.5
    )
    hard = [t.value for t in dict.fromkeys(a for a, _ in matrix) if is_hard(t)]
    return "\n".join(
        [
            f"Hard (not EIM, by natkit's classifier): {', '.join(hard)}.",
            f"Birthday, one hard: k = {budget.one_hard_ports}, {sprayed} probes at {RATE:g}/s "
            f"(model: {100 * one.success_probability(sprayed):.2f} %).",
            f"Birthday, both hard: {probes} probes per side in {both.seconds(probes):.0f} s "
            f"(model: {100 * both.success_probability(probes):.2f} %); even odds need "
            f"{full:,} per side ({both.seconds(full or 0) / 60:.1f} min), longer than NATs keep "
            "idle mappings, so these pairs fall back to a relay.",
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--both-hard-probes",
        type=int,
        default=BirthdayBudget().both_hard_probes,
        help="probes per side of a both-hard search",
    )
    args = parser.parse_args(argv)
    budget = BirthdayBudget(both_hard_probes=args.both_hard_probes)
    start = time.perf_counter()
    matrix = traversal_matrix(seed=args.seed, budget=budget)
    seconds = time.perf_counter() - start
    types = list(NatType)

    first = {pair: first_method_label(r.without_port_mapping) for pair, r in matrix.items()}
    print(
        render_grid(
            "First method that connects, no port mapping (STUN → birthday → relay):", types, first
        )
    )
    print()
    cells = {pair: method_cell(r) for pair, r in matrix.items()}
    print(
        render_grid(
            "Every method: S = STUN only, M = port mapping on A's NAT only, B1/B2 = birthday with "
            "1/2 hard sides;\n✓ connected, ✗ failed, · not applicable",
            types,
            cells,
        )
    )
    mapped = sum(r.port_mapping.connected for r in matrix.values())
    print(f"Port mapping on A's NAT alone connects {mapped} of {len(matrix)} ordered pairs.")
    print()
    print(render_birthday_footnote(matrix, budget))
    print()
    print(render_comparison(matrix))
    print(f"\n{len(matrix)} pairs x 3 methods simulated in {seconds:.1f} s")
    return 1 if disagreements(matrix) else 0


if __name__ == "__main__":
    sys.exit(main())
