"""Suite files (docs/design.md, "Suite files"): every bad input is one clear line."""
from __future__ import annotations

import math
import textwrap

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backends.base import REGISTRY
from harness.run.suite import (
    DEVICE_RE, SWEEP_KEYS, Measure, Suite, SuiteError, load_suite, parse_suite,
)
from harness.spec import DTYPES, MODES, WORKLOADS
from harness.spec.names import NAME_RE

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


# ---------------------------------------------------------------- property


def valid(suite: Suite) -> bool:
    assert NAME_RE.fullmatch(suite.name) and len(suite.hash) == 16   # a safe folder name
    for c in suite.cases:
        ints = (c.batch, c.seq_len, c.heads, c.head_dim, c.layers)
        assert c.suite == suite.name
        assert c.workload in WORKLOADS and c.mode in MODES and c.dtype in DTYPES
        assert c.backend in REGISTRY and c.variant in REGISTRY[c.backend].variant_names
        assert DEVICE_RE.fullmatch(c.device)
        assert all(type(n) is int and n > 0 for n in ints) and type(c.causal) is bool
        assert c.workload == "transformer" or c.layers == 1
    return True


scalars = st.none() | st.booleans() | st.integers(-3, 2**70) | st.floats() | st.text(max_size=8)
json_like = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                         | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=20)
GOOD = {"workload": WORKLOADS, "backend": tuple(REGISTRY), "mode": MODES, "dtype": DTYPES,
        "device": ("cpu", "cuda:1", "auto", "gpu:A100"), "batch": (1, 2), "seq_len": (8, 16),
        "heads": (1, 2), "head_dim": (8,), "causal": (False, True), "layers": (1, 3)}
# Junk close to the real thing, so that faults are found deep in the parser too.
near_miss = st.sampled_from(["fp32", "cuda:", "gpu:", "tpu", "torhc", "eagre", 0, -1, 1.5, True,
                             "8", [], {}, *TORCH_VARIANTS]) | json_like


def mutated(base: st.SearchStrategy, keys) -> st.SearchStrategy:
    """A valid table, then at most one key set to junk or removed."""
    def apply(args):
        table, fault = args
        if fault is not None:
            key, value, remove = fault
            table.pop(key, None) if remove else table.__setitem__(key, value)
        return table
    fault = st.none() | st.tuples(st.sampled_from([*keys, "bogus"]), near_miss, st.booleans())
    return st.tuples(base, fault).map(apply)


axes = {k: st.lists(st.sampled_from(v), min_size=1, max_size=2) | st.sampled_from(v)
        for k, v in GOOD.items()}
required = ("workload", "backend", "batch", "seq_len", "heads", "head_dim")
sweep = mutated(st.fixed_dictionaries(
    {k: axes[k] for k in required},
    optional={**{k: axes[k] for k in GOOD if k not in required},
              "variants": st.fixed_dictionaries({}, optional={"torch": st.lists(
                  st.sampled_from(TORCH_VARIANTS), min_size=1, max_size=3)})}),
    SWEEP_KEYS)
measure = mutated(st.fixed_dictionaries({}, optional={
    "min_run_ms": st.floats(0.1, 1e4), "min_samples": st.integers(1, 50),
    "warmup_ms": st.integers(0, 100), "timeout_s": st.floats(0.5, 600),
    "min_block_ms": st.floats(0.01, 10)}), [f for f in Measure.__dataclass_fields__])
document = json_like | mutated(st.fixed_dictionaries(
    {"sweep": st.lists(sweep, min_size=1, max_size=3)},
    optional={"name": st.text(min_size=1, max_size=8), "description": st.text(max_size=8),
              "measure": measure}), ("name", "description", "measure", "sweep"))


@settings(max_examples=500, deadline=None)
@given(document)
def test_any_document_is_a_suite_or_one_suite_error(doc):
    try:
        suite = parse_suite(doc, "p.toml")
    except SuiteError as err:
        message = str(err)
        assert message.startswith("p.toml: ") and len(message.splitlines()) == 1, message
    else:
        assert valid(suite)


# ---------------------------------------------------------------- fuzz, as files

def without_none(value):
    """TOML has no null: drop None from tables and arrays."""
    if isinstance(value, dict):
        return {k: without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_none(v) for v in value if v is not None]
    return value


def as_toml(value) -> str:
    import tomli_w
    doc = without_none(value)
    if doc is None:
        return ""
    return tomli_w.dumps(doc if isinstance(doc, dict) else {"value": doc})


# Damage to a document's text: a slice cut out, or junk spliced in, so that the
# reader meets unclosed brackets, bad escapes, duplicate keys and stray bytes.
TOML_BITS = st.sampled_from(['[', ']', '[[', ']]', '"', "'", '=', ',', '\n', '{', '}', '.',
                             '\\u12', '#', 'sweep', 'measure', '1e999', 'nan', '0x', '\xff',
                             'workload = ["mha"]\n', '[[sweep]]\n', '\ufeff', '\x00'])
edits = st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 40), st.lists(TOML_BITS,
                                                                             max_size=3)),
                 max_size=3)


def damaged(text: str, cuts) -> str:
    for at, length, junk in cuts:
        at %= len(text) + 1
        text = text[:at] + "".join(junk) + text[at + length:]
    return text


@settings(max_examples=500, deadline=None)
@given(document, edits, st.booleans())
def test_any_file_is_a_suite_or_one_suite_error(tmp_path_factory, doc, cuts, latin1):
    """A TOML text made from a random document, possibly damaged and possibly not
    UTF-8, through load_suite: a valid Suite, or one line naming the file."""
    text = damaged(as_toml(doc), cuts)
    path = tmp_path_factory.mktemp("fuzz") / "f.toml"
    path.write_bytes(text.encode("latin-1", "replace") if latin1 else
                     text.encode("utf-8", "surrogatepass"))
    try:
        suite = load_suite(path)
    except SuiteError as err:
        message = str(err)
        assert message.startswith(f"{path}: ") and len(message.splitlines()) == 1, message
    else:
        assert valid(suite)


# ---------------------------------------------------------------- tokens, d_model


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
