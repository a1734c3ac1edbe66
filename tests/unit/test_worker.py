"""The worker's pieces: the per-worker environment, the correctness check's
limits, and the reading of each framework's out-of-memory error (each framework
in a subprocess of its own, as in a real worker)."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from harness import worker
from harness.spec import Case
from harness.weights import make_inputs, make_weights

ROOT = Path(__file__).resolve().parents[2]


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


def sampled(monkeypatch, **changes):
    """A case past the (lowered) full-reference limit, judged on 8 rows of 40."""
    from harness import sampling
    monkeypatch.setattr(sampling, "FULL_REFERENCE_LIMIT_BYTES", 0)
    monkeypatch.setattr(sampling, "SAMPLED_ROWS", 8)
    c = case(seq_len=40, **changes)
    rows = sampling.check_rows(c)
    assert rows is not None and len(rows) == 8
    return c, rows


def test_a_large_forward_cell_is_judged_on_its_sampled_rows(monkeypatch):
    from harness import reference
    c, rows = sampled(monkeypatch)
    w, x = make_weights(c), make_inputs(c)
    good = reference.forward(c, w, x).astype(np.float32)
    result = worker.check(c, {"out": good}, w, x, worker.References())
    assert result["correct"] is True and result["check_rows"] == 8
    bad = good.copy()
    bad[:, rows[3]] *= 1.01                      # one sampled row wrong
    assert worker.check(c, {"out": bad}, w, x, worker.References())["correct"] is False
    unseen = good.copy()
    unseen[:, np.setdiff1d(np.arange(40), rows)[0]] *= 1.01
    assert worker.check(c, {"out": unseen}, w, x, worker.References())["correct"] is True


def test_a_large_train_cell_asks_the_backend_again_for_its_rows_loss(monkeypatch):
    from harness import reference
    c, rows = sampled(monkeypatch, mode="train")
    w, x = make_weights(c), make_inputs(c)
    asked = []

    def rerun(inputs):                          # a correct backend: the reference itself
        asked.append(inputs["g"])
        return reference.outputs(c, w, inputs)

    result = worker.check(c, reference.outputs(c, w, x), w, x, worker.References(), rerun)
    assert result["correct"] is True and result["check_rows"] == 8
    assert np.delete(asked[0], rows, axis=1).any() == False  # noqa: E712
    np.testing.assert_array_equal(asked[0][:, rows], x["g"][:, rows])

    def wrong_dk(inputs):
        got = reference.outputs(c, w, inputs)
        return {**got, "grad/k": got["grad/k"] * 1.01}
    bad = worker.check(c, {}, w, x, worker.References(), wrong_dk)
    assert bad["correct"] is False and bad["err_tensor"] == "grad/k"
    assert worker.check(c, {}, w, x, worker.References())["check_note"].startswith(
        "not checked")


def test_a_reference_that_fails_does_not_lose_the_measurement():
    c = case()
    result = worker.check(c, {}, {}, {}, worker.References())   # no inputs: KeyError inside
    assert result["check_note"].startswith("not checked: KeyError")


# Each framework's own out-of-memory error, provoked for real on the CPU: an
# allocation of 64 TiB, which no machine here has (and overcommit does not hide).
PROVOKE_OOM = {
    "torch": "import torch; torch.empty(2**44, dtype=torch.float32)",
    "jax": "import jax.numpy as jnp; jnp.zeros(2**44, jnp.float32).block_until_ready()",
    "tensorflow": "import tensorflow as tf; tf.zeros([2**44]).numpy()",
}
OOM_PROBE = """
import importlib.util, sys
if importlib.util.find_spec(sys.argv[1]) is None:
    print("missing"); sys.exit()
from harness.worker import is_oom, one_line
try:
    exec(sys.argv[2])
    print("no error")
except BaseException as exc:
    print(is_oom(exc), one_line(exc))
"""


@pytest.mark.parametrize("framework", sorted(PROVOKE_OOM))
def test_each_frameworks_real_cpu_oom_is_recognized(framework):
    proc = subprocess.run([sys.executable, "-c", OOM_PROBE, framework, PROVOKE_OOM[framework]],
                          cwd=ROOT, capture_output=True, text=True, timeout=180,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    verdict = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr
    if verdict == "missing":
        pytest.skip(f"{framework} not installed")
    assert verdict.startswith("True "), verdict
