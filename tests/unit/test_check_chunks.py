"""How `attnbench check` (and the gate) share their cases out among workers."""
from __future__ import annotations

from pathlib import Path

import pytest

from harness.run.check import MIN_SPLIT, Batch, _fill_workers
from harness.spec import Case


def batch(backend: str, mode: str, count: int) -> Batch:
    cases = [Case("chunks", "attention", backend, "jit", mode, "float32", "cuda:0",
                  1, 8 + i, 1, 8, False, 1) for i in range(count)]
    return Batch(backend, "cuda:0", cases, {}, 1, "check", [], Path(f"logs/{backend}-{mode}.log"))


# The check on the H200 machine: torch, JAX and a missing TensorFlow, both modes.
H200_CHECK = [("torch", "train", 160), ("jax", "train", 80), ("tensorflow", "train", 32),
              ("torch", "forward", 160), ("jax", "forward", 80), ("tensorflow", "forward", 32)]


@pytest.mark.parametrize("jobs", [1, 2, 3, 4, 8, 16])
def test_chunks_keep_every_case_once_in_order_with_their_own_logs(jobs):
    todo = [batch(*spec) for spec in H200_CHECK]
    chunks = _fill_workers(todo, jobs)
    assert [c for chunk in chunks for c in chunk.cases] == [c for b in todo for c in b.cases]
    assert len({chunk.log_path for chunk in chunks}) == len(chunks)
    for chunk in chunks:
        assert {c.backend for c in chunk.cases} == {chunk.backend}
        assert {c.mode for c in chunk.cases} == {chunk.cases[0].mode}
        assert len(chunk.cases) >= min(MIN_SPLIT, *(len(b.cases) for b in todo))


def test_with_two_batches_a_worker_none_is_cut():
    todo = [batch(*spec) for spec in H200_CHECK]
    assert _fill_workers(todo, 3) == todo
    assert _fill_workers(todo, 2) == todo


def test_on_sixteen_threads_the_slow_framework_no_longer_runs_in_one_worker():
    # jobs 8: one worker per batch held JAX's 80 train cases in one process (119 s).
    chunks = _fill_workers([batch(*spec) for spec in H200_CHECK], 8)
    jax_train = [c for c in chunks if c.backend == "jax" and c.cases[0].mode == "train"]
    assert len(jax_train) >= 2
    assert max(len(c.cases) for c in jax_train) <= 40
    assert len(chunks) <= 4 * 8                 # each chunk imports its framework again


def test_small_batches_are_not_cut_below_the_minimum():
    todo = [batch("jax", "train", MIN_SPLIT + 5), batch("torch", "forward", 3)]
    assert _fill_workers(todo, 16) == todo
