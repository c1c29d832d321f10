"""The collector pause of bundle runs and the bundler (`bundling.engine.without_cycle_collection`)
leaves the collector as it found it, also after an error and when nested."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from matching_service.bundling.engine import without_cycle_collection


@pytest.fixture(autouse=True)
def restore_collector() -> Iterator[None]:
    enabled = gc.isenabled()
    yield
    if enabled:
        gc.enable()
    else:
        gc.disable()


def test_the_collector_is_off_during_a_run_and_on_again_after_it_even_after_an_error() -> None:
    gc.enable()
    with without_cycle_collection():
        assert not gc.isenabled()
    assert gc.isenabled()
    with pytest.raises(RuntimeError), without_cycle_collection():
        raise RuntimeError("the run failed")
    assert gc.isenabled()


def test_a_collector_that_was_off_stays_off_and_nested_runs_restore_the_outer_state() -> None:
    gc.disable()
    with without_cycle_collection():
        assert not gc.isenabled()
    assert not gc.isenabled()
    gc.enable()
    with without_cycle_collection():
        with without_cycle_collection():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the outer run still holds it off
    assert gc.isenabled()
