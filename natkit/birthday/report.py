"""Versioned JSON documents for estimates and probe runs (the CLI prints them).

Numbers that are not finite (an expectation that does not exist) become
``null``, so the output is strict JSON.
"""

from __future__ import annotations

import math
from typing import Any

from natkit.birthday.events import BirthdayEvent, PairFound, ProberStats
from natkit.birthday.planner import Estimate

#: Bump when a key changes meaning or disappears (adding keys does not).
SCHEMA_VERSION = 1
#: The ``schema`` of each document, as every command's JSON names its own.
PLAN_SCHEMA = "natkit.birthday.plan"
PROBE_SCHEMA = "natkit.birthday.probe"


def _number(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def estimate_to_dict(result: Estimate) -> dict[str, Any]:
    """The planner's answer, with its inputs."""
    scenario = result.scenario
    seconds = result.seconds_for
    return {
        "schema": PLAN_SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "inputs": {
            "mode": scenario.mode.value,
            "ports": scenario.ports,
            "port_range": str(scenario.port_range),
            "range_size": scenario.port_range.size,
            "rate": scenario.rate,
            "probes": result.probes,
            "sampling": scenario.sampling.value,
        },
        "success_probability": result.success_probability,
        "expected_probes": _number(result.expected_probes),
        "expected_seconds": _number(result.expected_seconds),
        "expected_run_probes": _number(result.expected_run_probes),
        "expected_run_seconds": _number(result.expected_run_seconds),
        "unbounded_expected_probes": _number(result.unbounded_expected_probes),
        "unbounded_expected_seconds": _number(result.unbounded_expected_seconds),
        "budget_seconds": scenario.seconds(result.probes),
        "probes_for_50": result.probes_for_50,
        "probes_for_99": result.probes_for_99,
        "probes_for_99_9": result.probes_for_999,
        "seconds_for_50": seconds(result.probes_for_50),
        "seconds_for_99": seconds(result.probes_for_99),
        "seconds_for_99_9": seconds(result.probes_for_999),
        "search_space_fraction": result.search_space_fraction,
    }


def stats_to_dict(stats: ProberStats) -> dict[str, Any]:
    return {
        "probes_sent": stats.probes_sent,
        "opens_sent": stats.opens_sent,
        "acks_sent": stats.acks_sent,
        "received": stats.received,
        "dropped": {
            reason.value: count
            for reason, count in sorted(stats.dropped.items(), key=lambda item: item[0].value)
        },
    }


def event_to_dict(event: BirthdayEvent, started: float) -> dict[str, Any]:
    """A probe run's outcome; ``started`` is the run's start on the event's clock."""
    document: dict[str, Any] = {
        "schema": PROBE_SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "outcome": "hit" if isinstance(event, PairFound) else "exhausted",
        "elapsed_seconds": event.at - started,
    }
    if isinstance(event, PairFound):
        document["pair"] = {
            "socket": event.pair.socket,
            "local": str(event.pair.local),
            "remote": str(event.pair.remote),
        }
        document["via"] = event.via.name.lower()
    else:
        document["pair"] = None
        document["reason"] = event.reason.value
    document["stats"] = stats_to_dict(event.stats)
    return document
