"""Random packet loss on a link, in nftables (this kernel has no ``netem``).

A ``netdev`` table with an ingress chain drops a uniformly random share of
what arrives on one interface; putting it on both ends of a link loses
packets in both directions independently. Loss is in hundredths of a
percent so 0.5 % is expressible.
"""

from __future__ import annotations

LOSS_TABLE = "nk_loss"
_RESOLUTION = 10000  # numgen modulus: 1/100 of a percent


def loss_threshold(percent: float) -> int:
    """``N`` in ``numgen random mod 10000 < N`` for ``percent`` loss."""
    if not 0.0 <= percent <= 100.0:
        raise ValueError(f"loss must be between 0 and 100 percent, got {percent}")
    return round(percent * _RESOLUTION / 100)


def render_loss(interface: str, percent: float) -> str:
    """``nft -f`` input that sets (or, at 0 %, removes) the loss on ``interface``.

    Declare-delete-redeclare makes every call a replacement, in one
    transaction, whether or not a loss table existed before.
    """
    threshold = loss_threshold(percent)
    lines = [f"table netdev {LOSS_TABLE}", f"delete table netdev {LOSS_TABLE}"]
    if threshold > 0:
        lines += [
            f"table netdev {LOSS_TABLE} {{",
            "\tchain in {",
            f'\t\ttype filter hook ingress device "{interface}" priority 0; policy accept;',
            f"\t\tnumgen random mod {_RESOLUTION} < {threshold} drop",
            "\t}",
            "}",
        ]
    return "\n".join(lines) + "\n"
