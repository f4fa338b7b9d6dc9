"""Seeded trials split across processes, with results that do not depend on how.

Trials are cut into chunks of ``chunk`` trials; chunk ``i`` gets the ``i``-th
seed drawn from ``random.Random(seed)``, runs in whichever process is free,
and the chunks' outcomes are concatenated in chunk order. So the outcome
list depends on ``seed``, ``trials`` and ``chunk`` only, never on ``jobs``
or on scheduling: one process and two give the same numbers.
"""

from __future__ import annotations

import multiprocessing
import os
import random
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

from natkit.simulations.errors import SimulationError

SetupT = TypeVar("SetupT")
OutcomeT = TypeVar("OutcomeT")

#: ``trial_function(setup, seed, trials)`` -> one outcome per trial.
TrialFunction = Callable[[SetupT, int, int], list[OutcomeT]]

#: Trials per chunk: small enough to balance two processes, large enough
#: that the per-chunk overhead (pickling, a fresh pair of sites) is noise.
DEFAULT_CHUNK = 250


def chunk_plan(seed: int, trials: int, chunk: int = DEFAULT_CHUNK) -> list[tuple[int, int]]:
    """(seed, trials) of every chunk, in order."""
    if trials < 0 or chunk < 1:
        raise SimulationError(f"bad trials={trials} / chunk={chunk}")
    rng = random.Random(seed)
    return [(rng.getrandbits(63), min(chunk, trials - start)) for start in range(0, trials, chunk)]


def default_jobs() -> int:
    """One process per CPU this process may run on."""
    return len(os.sched_getaffinity(0))


def run_trials(
    function: TrialFunction[SetupT, OutcomeT],
    setup: SetupT,
    seed: int,
    trials: int,
    *,
    jobs: int = 1,
    chunk: int = DEFAULT_CHUNK,
) -> list[OutcomeT]:
    """``trials`` outcomes of ``function``, run in ``jobs`` processes.

    ``function`` and ``setup`` must be picklable (a module-level function
    and a frozen dataclass). ``jobs=1`` runs everything in this process.
    """
    chunks = chunk_plan(seed, trials, chunk)
    if jobs <= 1 or len(chunks) <= 1:
        return [outcome for s, n in chunks for outcome in function(setup, s, n)]
    # fork: workers start at once and inherit the imported modules.
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        futures = [pool.submit(function, setup, s, n) for s, n in chunks]
        return [outcome for future in futures for outcome in future.result()]
