"""The exact success model of birthday-paradox port probing.

Theory of operation
-------------------
Every case reduces to one urn: ``space`` cells, ``targets`` of them marked,
``probes`` cells drawn. The probability of drawing no marked cell (a *miss*) is

* drawn without replacement (the prober never repeats a cell)::

      Q = C(space - targets, probes) / C(space, probes)
        = prod_{i < probes} (1 - targets / (space - i))

* drawn with replacement (independent uniform draws)::

      Q = (1 - targets / space) ** probes

and P(hit) = 1 - Q. How the NAT cases map onto the urn, and what that
assumes, is spelled out in :mod:`natkit.birthday.planner`.

Numerics
--------
Everything is a natural logarithm, so ``space`` can be 65535² and the answer
still be exact to ~1e-12 relative. Q is symmetric in ``targets`` and
``probes``; with ``m = min(targets, probes)``:

1. ``m <= DIRECT_TERMS``: the product above, as a compensated sum of
   ``log1p`` terms (m of them);
2. otherwise Stirling's series for ``log x!``, written as a second
   difference whose large parts cancel *algebraically* before any rounding
   (see :func:`_stirling_log_miss`), so a result like -0.69 does not come out
   of subtracting numbers near 9e10;
3. when ``space - targets - probes`` is too small for Stirling, plain
   ``math.lgamma``: the miss is then astronomically unlikely anyway, so an
   absolute error of 1e-10 in its log does not matter.
"""

from __future__ import annotations

import math

from natkit.errors import LocalProtocolError

#: Up to this many factors the product is summed directly.
DIRECT_TERMS = 4096
#: Stirling's series (four correction terms) is used only for x! with x >= this.
_STIRLING_MIN = 1000


def _check(space: int, targets: int, probes: int) -> None:
    if space < 1 or targets < 0 or probes < 0 or targets > space:
        raise LocalProtocolError(
            f"urn needs 0 <= targets <= space and probes >= 0: "
            f"space={space} targets={targets} probes={probes}"
        )


def log_miss(space: int, targets: int, probes: int) -> float:
    """log P(no marked cell among ``probes`` distinct draws).

    ``log(C(space - targets, probes) / C(space, probes))``; ``-inf`` when a
    hit is certain (``probes > space - targets``).
    """
    _check(space, targets, probes)
    small, large = sorted((targets, probes))
    if small == 0:
        return 0.0
    low = space - targets - probes
    if low < 0:
        return -math.inf
    if small <= DIRECT_TERMS:
        return math.fsum(math.log1p(-large / (space - i)) for i in range(small))
    if low < _STIRLING_MIN:
        return (
            math.lgamma(space - targets + 1)
            + math.lgamma(space - probes + 1)
            - math.lgamma(space + 1)
            - math.lgamma(low + 1)
        )
    return _stirling_log_miss(space, targets, probes)


def log_miss_with_replacement(space: int, targets: int, probes: int) -> float:
    """log P(no marked cell among ``probes`` independent uniform draws)."""
    _check(space, targets, probes)
    if targets == space and probes > 0:
        return -math.inf
    return probes * math.log1p(-targets / space)


def _stirling_log_miss(a: int, k: int, n: int) -> float:
    """``G(a-k) + G(a-n) - G(a) - G(a-k-n)`` with ``G(x) = log x!``.

    Stirling: ``G(x) = x ln x - x + ½ ln(2πx) + φ(x)``. Write each argument
    as ``a - u`` (u = k, n, 0, k+n). Then ``(a-u) ln(a-u) = a ln a - u ln a
    - u + r(u)`` with ``r(u) = (a-u) log1p(-u/a) + u``; the terms linear in u
    cancel in the second difference because ``k + n - (k+n) = 0``, leaving
    ``r(k) + r(n) - r(k+n)``, each ``r`` about ``u²/2a``. The ``½ ln x`` part
    becomes ``log1p`` terms the same way, and ``φ`` is small.
    """
    ln_part = _r(a, k) + _r(a, n) - _r(a, k + n)
    half_log = 0.5 * (math.log1p(-k / a) + math.log1p(-n / a) - math.log1p(-(k + n) / a))
    correction = _phi(a - k) + _phi(a - n) - _phi(a) - _phi(a - k - n)
    return ln_part + half_log + correction


def _r(a: int, u: int) -> float:
    """``(a - u) * log1p(-u/a) + u`` without cancellation: ``a * h(u/a)``."""
    x = u / a
    if x < 0.05:
        # h(x) = (1-x) log1p(-x) + x = sum_{j>=2} x^j / (j (j-1)); 0.05^20 < 1e-26.
        total = 0.0
        power = x
        for j in range(2, 22):
            power *= x
            total += power / (j * (j - 1))
        return a * total
    return a * ((1.0 - x) * math.log1p(-x) + x)


def _phi(x: int) -> float:
    """Stirling's correction ``log x! - (x ln x - x + ½ ln 2πx)`` for x >= 1000."""
    inv = 1.0 / x
    inv2 = inv * inv
    return inv * (1 / 12 - inv2 * (1 / 360 - inv2 * (1 / 1260 - inv2 / 1680)))
