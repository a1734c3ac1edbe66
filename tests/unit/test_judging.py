"""The correctness columns of a row: judged against the reference, on every row
of a small cell and on sampled rows of a large one (asking the backend again in
train mode), and the references shared between a run's workers on disk."""
import numpy as np

from harness.correctness import judging
from harness.spec import Case, reference
from harness.spec.weights import make_inputs, make_weights


def case(**changes):
    base = Case("t", "attention", "torch", "sdpa", "forward", "float32", "cpu",
                1, 8, 2, 4, False, 1)
    return base.replace(**changes)


def test_check_judges_a_result_against_the_reference():
    c = case()
    w, x = make_weights(c), make_inputs(c)
    good = {"out": reference.forward(c, w, x).astype(np.float32)}
    bad = {"out": good["out"] * 1.01}
    assert judging.judge_outputs(c, good, w, x, judging.References())["correct"] is True
    assert judging.judge_outputs(c, bad, w, x, judging.References())["correct"] is False


def sampled(monkeypatch, **changes):
    """A case past the (lowered) full-reference limit, judged on 8 rows of 40."""
    from harness.correctness import sampling
    monkeypatch.setattr(sampling, "FULL_REFERENCE_LIMIT_BYTES", 0)
    monkeypatch.setattr(sampling, "SAMPLED_ROWS", 8)
    c = case(seq_len=40, **changes)
    rows = sampling.check_rows(c)
    assert rows is not None and len(rows) == 8
    return c, rows


def test_a_large_forward_cell_is_judged_on_its_sampled_rows(monkeypatch):
    c, rows = sampled(monkeypatch)
    w, x = make_weights(c), make_inputs(c)
    good = reference.forward(c, w, x).astype(np.float32)
    result = judging.judge_outputs(c, {"out": good}, w, x, judging.References())
    assert result["correct"] is True and result["check_rows"] == 8
    bad = good.copy()
    bad[:, rows[3]] *= 1.01                      # one sampled row wrong
    assert judging.judge_outputs(c, {"out": bad}, w, x, judging.References())["correct"] is False
    unseen = good.copy()
    unseen[:, np.setdiff1d(np.arange(40), rows)[0]] *= 1.01
    assert judging.judge_outputs(c, {"out": unseen}, w, x, judging.References())["correct"] is True


def test_a_large_train_cell_asks_the_backend_again_for_its_rows_loss(monkeypatch):
    c, rows = sampled(monkeypatch, mode="train")
    w, x = make_weights(c), make_inputs(c)
    asked = []

    def rerun(inputs):                          # a correct backend: the reference itself
        asked.append(inputs["g"])
        return reference.outputs(c, w, inputs)

    result = judging.judge_outputs(c, reference.outputs(c, w, x), w, x, judging.References(), rerun)
    assert result["correct"] is True and result["check_rows"] == 8
    assert np.delete(asked[0], rows, axis=1).any() == False  # noqa: E712
    np.testing.assert_array_equal(asked[0][:, rows], x["g"][:, rows])

    def wrong_dk(inputs):
        got = reference.outputs(c, w, inputs)
        return {**got, "grad/k": got["grad/k"] * 1.01}
    bad = judging.judge_outputs(c, {}, w, x, judging.References(), wrong_dk)
    assert bad["correct"] is False and bad["err_tensor"] == "grad/k"
    assert judging.judge_outputs(c, {}, w, x, judging.References())["check_note"].startswith(
        "not checked")


def test_a_reference_that_fails_does_not_lose_the_measurement():
    c = case()
    result = judging.judge_outputs(c, {}, {}, {}, judging.References())   # no inputs: KeyError inside
    assert result["check_note"].startswith("not checked: KeyError")


def test_a_run_computes_each_reference_once_for_all_its_workers(tmp_path, monkeypatch):
    """The first worker leaves the pair in the run's folder; the next one (another
    backend, same shape) reads it back instead of computing it, bit for bit."""
    c = case(mode="train", seq_len=12)
    w, x = make_weights(c), make_inputs(c)
    first = judging.References(tmp_path / "references").get(c, w, x)
    assert len(list((tmp_path / "references").glob("*.npz"))) == 1

    def refuse(*args, **kwargs):
        raise AssertionError("recomputed a reference the run already has")
    monkeypatch.setattr(judging.reference, "outputs", refuse)
    again = judging.References(tmp_path / "references").get(c.replace(backend="jax"), w, x)
    for mine, theirs in zip(first, again):
        assert set(mine) == set(theirs) == {"out", "grad/q", "grad/k", "grad/v"}
        for name in mine:
            np.testing.assert_array_equal(mine[name], theirs[name])


def test_a_reference_too_large_or_unreadable_is_computed_not_shared(tmp_path, monkeypatch):
    c = case()
    w, x = make_weights(c), make_inputs(c)
    folder = tmp_path / "references"
    monkeypatch.setattr(judging, "CACHE_LIMIT_BYTES", 10)
    judging.References(folder).get(c, w, x)
    assert not folder.exists()
    monkeypatch.setattr(judging, "CACHE_LIMIT_BYTES", 2**30)
    judging.References(folder, "salt").get(c, w, x)
    [saved] = folder.glob("*-references.npz")
    saved.write_bytes(b"cut off by a crash")
    exact, low = judging.References(folder, "salt").get(c, w, x)
    np.testing.assert_allclose(exact["out"], reference.forward(c, w, x))
    assert judging._load(saved, ("exact", "low")) is not None       # written again whole


def test_shared_references_are_named_by_what_decides_them(tmp_path):
    c = case()
    w, x = make_weights(c), make_inputs(c)
    judging.References(tmp_path, "code1").get(c, w, x)
    judging.References(tmp_path, "code1").get(c.replace(backend="tensorflow"), w, x)
    judging.References(tmp_path, "code2").get(c, w, x)
    judging.References(tmp_path, "code1").get(c, w, x, rows=np.array([0, 2]))
    judging.References(tmp_path, "code1").get(c.replace(dtype="bfloat16"), w, x)
    names = sorted(p.name for p in tmp_path.glob("*-references.npz"))
    assert len(names) == 4, names          # the backend alone shares the file
    assert all(c.shape_key in n for n in names)


def test_a_run_draws_each_shapes_weights_and_inputs_once(tmp_path, monkeypatch):
    c = case(workload="mha", mode="train", seq_len=12)
    drawn = judging.References(tmp_path).data(c)

    def refuse(case):
        raise AssertionError("drew again what the run already has")
    monkeypatch.setattr(judging, "make_weights", refuse)
    monkeypatch.setattr(judging, "make_inputs", refuse)
    again = judging.References(tmp_path).data(c.replace(backend="tensorflow"))
    for mine, theirs, fresh in zip(drawn, again, (make_weights(c), make_inputs(c))):
        assert set(mine) == set(theirs) == set(fresh)
        for name in mine:
            np.testing.assert_array_equal(theirs[name], fresh[name])
