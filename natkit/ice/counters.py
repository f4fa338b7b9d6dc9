"""What a connect agent dropped, repaired, sent and received: plain counters."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class ConnectCounters:
    """Input the agent dropped or repaired, by reason (never raised)."""

    #: Datagrams that are not STUN (e.g. a tunnel's packets on a shared port).
    not_stun: int = 0
    #: STUN that does not parse, or a success response without XOR-MAPPED-ADDRESS.
    malformed: int = 0
    #: Requests whose USERNAME names no session (or an old generation).
    unknown_username: int = 0
    #: Requests or responses failing MESSAGE-INTEGRITY.
    bad_integrity: int = 0
    #: Authenticated requests lacking PRIORITY or a role, or with both roles.
    bad_check: int = 0
    #: Responses to no transaction of ours.
    unknown_transaction: int = 0
    #: Responses to a check that already ended (duplicates, replays, late answers).
    late_response: int = 0
    #: Responses from another address (or base) than the request went to.
    wrong_source: int = 0
    #: Role conflicts seen (RFC 8445 §7.3.1.1), in requests or 487 answers.
    role_conflicts: int = 0
    #: Error responses other than 487 (the check fails).
    error_responses: int = 0
    #: Indications and methods other than Binding.
    unexpected: int = 0
    #: Datagrams a relay could not carry (``wrap`` returned ``None``).
    relay_refused: int = 0
    #: Remote candidates beyond ``max_remote_candidates``.
    remote_candidates_dropped: int = 0
    #: Pairs beyond ``max_pairs``.
    pairs_dropped: int = 0
    #: Requests on a base with no local candidate of their family.
    unpaired_requests: int = 0
    #: Signal messages of an unknown generation or with conflicting credentials.
    signals_ignored: int = 0
    #: Peers' traversal reports that did not decode (treated as unknown).
    bad_reports: int = 0
    #: Birthday offers declined (beyond this node's limits, or no birthday here).
    birthday_refused: int = 0


@dataclass(slots=True)
class ConnectStats:
    """What the agent sent and received, for diagnostics and the benchmark."""

    #: Paced check transmissions (retransmissions included).
    checks_sent: int = 0
    #: Keepalive transmissions (not paced).
    keepalives_sent: int = 0
    #: Requests answered (success or 487).
    answers_sent: int = 0
    #: Authenticated answers to our checks.
    answers_received: int = 0
