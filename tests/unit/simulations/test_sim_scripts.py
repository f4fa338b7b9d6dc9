"""The Monte Carlo and plot scripts run end to end, on tiny trial counts."""

from __future__ import annotations

from pathlib import Path

import pytest

from natkit.birthday.ports import PortRange
from natkit.simulations.birthday_montecarlo import (
    ISSUE_TABLE,
    both_hard_comparison,
    both_hard_setup,
    main,
    render,
)
from natkit.simulations.plots import write_plots

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_the_montecarlo_script_prints_the_table_beside_the_model(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # 40 trials cannot be within 1 point; the tolerance here only tests the plumbing.
    assert main(["--trials", "40", "--jobs", "1", "--both-trials", "0", "--tolerance", "100"]) == 0
    out = capsys.readouterr().out
    for probes in ISSUE_TABLE:
        assert f"\n{probes:>7} " in out
    assert "all within ±100 percentage point(s) of the model" in out
    assert "54,562" in out  # the full-range both-hard 50 % point, from the model


def test_the_montecarlo_script_fails_outside_the_tolerance() -> None:
    assert main(["--trials", "40", "--jobs", "1", "--both-trials", "0", "--tolerance", "0"]) == 1


def test_both_hard_rows_are_the_models_levels() -> None:
    setup = both_hard_setup(PortRange(1024, 1087), ports=8)
    comparison = both_hard_comparison(30, seed=2, jobs=1, setup=setup)
    scenario = setup.scenario()
    assert [p.probes for p in comparison.points] == sorted(
        n for level in (0.10, 0.25, 0.50, 0.90, 0.99, 0.999) if (n := scenario.probes_for(level))
    )
    assert "Both sides hard: ports 1024-1087 (N = 64" in render(comparison)


def test_plots_are_written_as_png(tmp_path: Path) -> None:
    written = write_plots(
        tmp_path / "out",
        trials=20,
        both_trials=10,
        one_hard_ports=(256, 1024),
        both_range=PortRange(1024, 1087),
    )
    assert [p.name for p in written] == ["one_hard.png", "both_hard.png"]
    for path in written:
        assert path.read_bytes()[:8] == PNG_MAGIC
        assert path.stat().st_size > 10_000
