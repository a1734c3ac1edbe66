"""Suite files (docs/design.md, "Suite files"): every bad input is one clear line."""
from __future__ import annotations

import math
import textwrap

import pytest

from backends.base import REGISTRY
from harness.run.suite import Measure, SuiteError, load_suite, parse_suite
from harness.spec import DTYPES, WORKLOADS

TORCH_VARIANTS = REGISTRY["torch"].variant_names

MINIMAL = """
[[sweep]]
workload = ["mha"]
backend = ["torch"]
batch = [1]
seq_len = [128]
heads = [4]
head_dim = [64]
"""


def write(tmp_path, text: str, name: str = "x.toml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def with_sweep(**overrides) -> str:
    """MINIMAL with some sweep lines replaced (value given as TOML text)."""
    lines = []
    for line in MINIMAL.strip().splitlines():
        key = line.split("=")[0].strip()
        if key in overrides:
            line = f"{key} = {overrides.pop(key)}"
        lines.append(line)
    lines += [f"{k} = {v}" for k, v in overrides.items()]
    return "\n".join(lines) + "\n"


def error_of(path) -> str:
    with pytest.raises(SuiteError) as info:
        load_suite(path)
    message = str(info.value)
    assert len(message.splitlines()) == 1, message
    assert str(path) in message
    return message


# ---------------------------------------------------------------- bad input


def test_unknown_top_level_key(tmp_path):
    msg = error_of(write(tmp_path, "foo = 1\n" + MINIMAL))
    assert "'foo'" in msg and "allowed: name, description, measure, sweep" in msg


def test_unknown_sweep_key_suggests_the_close_one(tmp_path):
    msg = error_of(write(tmp_path, MINIMAL + "seq_lne = [1]\n"))
    assert "sweep[0]" in msg and "'seq_lne'" in msg
    assert "did you mean 'seq_len'?" in msg


def test_wrong_type(tmp_path):
    msg = error_of(write(tmp_path, with_sweep(seq_len='"128"')))
    assert "sweep[0].seq_len" in msg and "'128'" in msg and "positive integers" in msg


def test_bad_dtype(tmp_path):
    msg = error_of(write(tmp_path, with_sweep(dtype='["fp32"]')))
    assert "sweep[0].dtype" in msg and "'fp32'" in msg
    assert all(d in msg for d in DTYPES)


def test_zero_heads(tmp_path):
    msg = error_of(write(tmp_path, with_sweep(heads="0")))
    assert msg.endswith("sweep[0].heads: expected positive integers, got 0")


def test_bool_is_not_an_int(tmp_path):
    msg = error_of(write(tmp_path, with_sweep(heads="[true]")))
    assert "sweep[0].heads" in msg and "True" in msg


def test_unknown_backend(tmp_path):
    msg = error_of(write(tmp_path, with_sweep(backend='["torhc"]')))
    assert "sweep[0].backend" in msg and "'torhc'" in msg and "did you mean 'torch'?" in msg


def test_unknown_workload(tmp_path):
    msg = error_of(write(tmp_path, with_sweep(workload='["mlp"]')))
    assert "sweep[0].workload" in msg and "'mlp'" in msg
    assert all(w in msg for w in WORKLOADS)


def test_unknown_variant(tmp_path):
    msg = error_of(write(tmp_path, MINIMAL + '[sweep.variants]\ntorch = ["eagre"]\n'))
    assert "sweep[0].variants.torch" in msg and "'eagre'" in msg
    assert "did you mean 'eager'?" in msg


def test_variants_for_a_backend_not_in_the_sweep(tmp_path):
    msg = error_of(write(tmp_path, MINIMAL + '[sweep.variants]\njax = ["jit"]\n'))
    assert "sweep[0].variants" in msg and "'jax'" in msg and "not in this sweep" in msg


def test_empty_grid(tmp_path):
    msg = error_of(write(tmp_path, with_sweep(seq_len="[]")))
    assert "sweep[0].seq_len" in msg and "empty grid" in msg


def test_no_sweep(tmp_path):
    msg = error_of(write(tmp_path, 'name = "x"\n'))
    assert "[[sweep]]" in msg


def test_missing_required_key(tmp_path):
    text = "\n".join(l for l in MINIMAL.splitlines() if not l.startswith("head_dim"))
    msg = error_of(write(tmp_path, text))
    assert "sweep[0]" in msg and "'head_dim'" in msg


def test_not_toml(tmp_path):
    msg = error_of(write(tmp_path, "[[sweep]\nworkload = \n"))
    assert "not valid TOML" in msg


def test_not_utf8(tmp_path):
    path = tmp_path / "x.toml"
    path.write_bytes(b'name = "\xff\xfe"\n')
    assert "not UTF-8" in error_of(path)


def test_missing_file(tmp_path):
    assert "no such file" in error_of(tmp_path / "nope.toml")


def test_directory(tmp_path):
    assert "directory" in error_of(tmp_path)


@pytest.mark.parametrize("doc, where", [
    ([], "top level"),
    ({"sweep": {"workload": "mha"}}, "sweep"),
    ({"sweep": [1]}, "sweep[0]"),
    ({"measure": [1], "sweep": []}, "measure"),
    ({"measure": {"min_samples": 2.5}}, "measure.min_samples"),
    ({"measure": {"timeout_s": 0}}, "measure.timeout_s"),
    ({"measure": {"warmup_ms": float("nan")}}, "measure.warmup_ms"),
    ({"measure": {"min_run_ms": 10 ** 400}}, "measure.min_run_ms"),
    ({"name": 3}, "name"),
    ({"sweep": [{"variants": []}]}, "sweep[0]"),
])
def test_malformed_documents(doc, where):
    with pytest.raises(SuiteError) as info:
        parse_suite(doc, "s.toml")
    message = str(info.value)
    assert len(message.splitlines()) == 1 and message.startswith("s.toml: ")
    assert where in message


# ---------------------------------------------------------------- good input


def test_product_count_and_defaults(tmp_path):
    grid = {"workload": ["mha", "block"], "backend": ["torch"], "batch": [1, 2],
            "seq_len": [64, 128, 256], "heads": [2, 4], "head_dim": [32],
            "mode": ["forward", "train"], "causal": [False, True]}
    suite = parse_suite({"sweep": [grid]}, "suites/demo.toml")
    expected = math.prod(len(v) for v in grid.values()) * len(TORCH_VARIANTS)
    assert len(suite.cases) == expected
    assert suite.name == "demo" and suite.description == ""
    assert suite.path == "suites/demo.toml"
    assert {c.dtype for c in suite.cases} == {"float32"}
    assert {c.device for c in suite.cases} == {"cpu"}
    assert {c.variant for c in suite.cases} == set(TORCH_VARIANTS)
    assert {c.suite for c in suite.cases} == {"demo"}


def test_scalars_are_one_element_lists():
    doc = {"sweep": [{"workload": "mha", "backend": "torch", "batch": 1, "seq_len": 8,
                      "heads": 1, "head_dim": 8, "variants": {"torch": "sdpa"}}]}
    (case,) = parse_suite(doc).cases
    assert (case.workload, case.variant, case.seq_len) == ("mha", "sdpa", 8)


def test_layers_only_multiply_the_transformer(tmp_path):
    path = write(tmp_path, with_sweep(workload='["mha", "transformer"]', layers="[1, 2, 4]")
                 + '[sweep.variants]\ntorch = ["eager"]\n')
    cases = load_suite(path).cases
    assert [(c.workload, c.layers) for c in cases] == [
        ("mha", 1), ("transformer", 1), ("transformer", 2), ("transformer", 4)]


def test_non_transformer_layers_collapse_to_one(tmp_path):
    cases = load_suite(write(tmp_path, with_sweep(layers="[2, 3]"))).cases
    assert len(cases) == len(TORCH_VARIANTS) and {c.layers for c in cases} == {1}


def test_measure_defaults_and_overrides(tmp_path):
    assert load_suite(write(tmp_path, MINIMAL)).measure == Measure()
    suite = load_suite(write(tmp_path, "[measure]\nmin_samples = 3\nwarmup_ms = 0\n"
                             "timeout_s = 2.5\n" + MINIMAL))
    assert suite.measure == Measure(min_samples=3, warmup_ms=0, timeout_s=2.5)
    assert suite.measure.min_run_ms == 500 and suite.measure.min_block_ms == 1.0


def test_order_is_stable_and_deduplicated_across_sweeps(tmp_path):
    text = ('name = "ordered"\ndescription = "d"\n'
            + with_sweep(seq_len="[256, 128, 256]")
            + '[sweep.variants]\ntorch = ["sdpa", "eager"]\n'
            + with_sweep(seq_len="[128, 512]") + '[sweep.variants]\ntorch = ["eager"]\n')
    first, second = load_suite(write(tmp_path, text)), load_suite(write(tmp_path, text))
    assert first == second and first.name == "ordered" and first.description == "d"
    assert [(c.variant, c.seq_len) for c in first.cases] == [
        ("sdpa", 256), ("sdpa", 128), ("eager", 256), ("eager", 128), ("eager", 512)]


def test_gpu_devices(tmp_path):
    devices = '["cpu", "cuda", "cuda:1", "auto", "gpu:H100", "gpu:RTX 4090"]'
    cases = load_suite(write(tmp_path, with_sweep(device=devices))).cases
    assert len({c.device for c in cases}) == 6
    for bad in ('"cuda:"', '"tpu"', '"gpu:"', '"gpu:H100\\n"'):
        assert "sweep[0].device" in error_of(write(tmp_path, with_sweep(device=bad)))


# ---------------------------------------------------------------- tokens, d_model
# (any document or damaged file: tests/unit/test_suite_fuzz.py)


def test_tokens_and_d_model_fix_batch_and_heads(tmp_path):
    text = with_sweep(batch=None, heads=None, seq_len="[512, 2048, 16384]",
                      head_dim="[64, 128]")
    text = "\n".join(l for l in text.splitlines() if not l.startswith(("batch", "heads")))
    cases = load_suite(write(tmp_path, text + "\ntokens = 16384\nd_model = 2048\n")).cases
    assert {(c.batch, c.seq_len) for c in cases} == {(32, 512), (8, 2048), (1, 16384)}
    assert {(c.heads, c.head_dim) for c in cases} == {(32, 64), (16, 128)}
    assert len(cases) == 6 * len(TORCH_VARIANTS)      # 3 lengths x 2 head sizes


@pytest.mark.parametrize("extra, words", [
    ("tokens = 16384", ["'batch' or 'tokens'", "not both"]),
    ("d_model = 256", ["'heads' or 'd_model'", "not both"]),
])
def test_tokens_or_batch_not_both(tmp_path, extra, words):
    msg = error_of(write(tmp_path, MINIMAL + extra + "\n"))
    assert all(w in msg for w in words), msg


def test_tokens_must_be_a_multiple_of_every_seq_len(tmp_path):
    text = "\n".join(l for l in MINIMAL.splitlines() if not l.startswith("batch"))
    msg = error_of(write(tmp_path, text + "\ntokens = 1000\n"))
    assert "sweep[0].tokens" in msg and "seq_len = 128" in msg
    text = "\n".join(l for l in MINIMAL.splitlines() if not l.startswith("heads"))
    msg = error_of(write(tmp_path, text + "\nd_model = 100\n"))
    assert "sweep[0].d_model" in msg and "head_dim = 64" in msg


def test_neither_batch_nor_tokens(tmp_path):
    text = "\n".join(l for l in MINIMAL.splitlines() if not l.startswith("batch"))
    assert "'batch' (or 'tokens')" in error_of(write(tmp_path, text))


def test_flush_l2_is_a_boolean(tmp_path):
    suite = load_suite(write(tmp_path, "[measure]\nflush_l2 = true\n" + MINIMAL))
    assert suite.measure.flush_l2 is True and Measure().flush_l2 is False
    msg = error_of(write(tmp_path, "[measure]\nflush_l2 = 1\n" + MINIMAL))
    assert "measure.flush_l2" in msg and "true or false" in msg
