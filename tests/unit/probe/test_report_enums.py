"""Reasons and test names are enums in the report, plain strings in the JSON."""

from __future__ import annotations

import json

from natkit.probe.report import ProbeName, Verdict, report_to_dict
from natkit.simulations import NatConfig
from natkit.simulations.classification import simulate_classification


def test_reasons_are_keyed_by_verdict_and_tests_are_probe_names() -> None:
    report = simulate_classification(NatConfig()).report
    assert report.reasons
    assert all(isinstance(key, Verdict) for key in report.reasons)
    assert all(isinstance(o.test, ProbeName) for o in report.observations)
    # Former string spellings still find them.
    assert report.reasons["filtering"] == report.reasons[Verdict.FILTERING]


def test_the_json_carries_plain_strings_in_the_same_order() -> None:
    report = simulate_classification(NatConfig()).report
    document = report_to_dict(report)
    reasons = document["reasons"]
    assert [type(key) for key in reasons] == [str] * len(reasons)
    assert list(reasons) == [verdict.value for verdict in report.reasons]
    assert list(reasons)[:5] == ["udp_blocked", "behind_nat", "mapping", "filtering", "hairpin"]
    tests = [o["test"] for o in document["observations"]]
    assert all(type(test) is str for test in tests)
    assert tests[0] == "binding"
    assert json.loads(json.dumps(document)) == document
