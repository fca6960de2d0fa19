"""A short run of each fuzz target (tests/fuzz/targets.py): the whole seed corpus, then
a few hundred deterministic mutations of it, each input under a hang bound. Long runs
and atheris: ``bench/fuzz.py``."""

from __future__ import annotations

import random
import signal
from collections.abc import Iterator
from types import FrameType

import pytest

from tests.fuzz import targets

MUTATIONS = 300
BOUND_SECONDS = 5.0  # per input: a hang bound, not a speed check


class Hang(Exception):
    pass


def _alarm(_signum: int, _frame: FrameType | None) -> None:
    raise Hang("one fuzz input ran past the hang bound")


@pytest.fixture
def bounded() -> Iterator[None]:
    previous = signal.signal(signal.SIGALRM, _alarm)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize("name", sorted(targets.TARGETS))
def test_target_survives_corpus_and_mutations(name: str, bounded: None) -> None:
    fn = targets.TARGETS[name]
    pool = targets.corpus(name)
    assert pool, f"tests/fuzz/corpus/{name} is empty: run bench/fuzz.py --seed"
    rng = random.Random(name)
    inputs = pool + [targets.mutate(rng, rng.choice(pool), pool) for _ in range(MUTATIONS)]
    for data in inputs:
        signal.setitimer(signal.ITIMER_REAL, BOUND_SECONDS)
        try:
            fn(data)
        except Exception as exc:
            raise AssertionError(f"{name} failed on {data[:200]!r}") from exc
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)


def test_http1_invariant_catches_a_wrong_refusal() -> None:
    rec = targets.Http1Recorder()
    with pytest.raises(AssertionError, match="refused with 500"):
        rec.protocol_error(500, "not a client error")


def test_clienthello_seed_names_its_host() -> None:
    hellos = targets.corpus("clienthello")
    assert any(b"api.example.com" in h for h in hellos)
