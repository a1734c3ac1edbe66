"""The worker's pieces that need no framework: the per-worker environment and
the correctness check's limits."""
import numpy as np

from harness import worker
from harness.spec import Case
from harness.weights import make_inputs, make_weights


def case(**changes):
    base = Case("t", "attention", "torch", "sdpa", "forward", "float32", "cpu",
                1, 8, 2, 4, False, 1)
    return base.replace(**changes)


def test_environment_pins_one_gpu_and_the_thread_count(tmp_path):
    env = worker.environment_for("torch", "cuda:3", threads=2, scratch=str(tmp_path))
    assert env["CUDA_VISIBLE_DEVICES"] == "3"
    assert env["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
    assert env["OMP_NUM_THREADS"] == "2" and env["ATTNBENCH_THREADS"] == "2"
    cpu = worker.environment_for("torch", "cpu", threads=1, scratch=str(tmp_path))
    assert cpu["CUDA_VISIBLE_DEVICES"] == ""


def test_check_judges_a_result_against_the_reference():
    c = case()
    w, x = make_weights(c), make_inputs(c)
    from harness import reference
    good = {"out": reference.forward(c, w, x).astype(np.float32)}
    bad = {"out": good["out"] * 1.01}
    assert worker.check(c, good, w, x, worker.References())["correct"] is True
    assert worker.check(c, bad, w, x, worker.References())["correct"] is False


def test_a_cell_too_big_for_the_host_reference_is_measured_but_not_checked(monkeypatch):
    monkeypatch.setattr(worker, "REFERENCE_LIMIT_BYTES", 1000)
    c = case()
    result = worker.check(c, {"out": np.zeros((1, 8, 2, 4))}, {}, make_inputs(c),
                          worker.References())
    assert "correct" not in result
    assert result["check_note"].startswith("not checked")


def test_a_reference_that_fails_does_not_lose_the_measurement():
    c = case()
    result = worker.check(c, {}, {}, {}, worker.References())   # no inputs: KeyError inside
    assert result["check_note"].startswith("not checked: KeyError")
