"""NAT behaviour discovery (RFC 4787 terms, RFC 5780 tests).

``classifier`` is the sans-IO core; ``report`` is what it produces;
``verdicts`` and ``evidence`` hold the decision rules as plain functions.
"""
