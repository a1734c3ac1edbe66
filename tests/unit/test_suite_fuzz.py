"""Suite files, fuzzed (hypothesis): any document, and any damaged file, is a valid
suite or one SuiteError line naming the file."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from backends.base import REGISTRY
from harness.run.suite import (
    DEVICE_RE, SWEEP_KEYS, Measure, Suite, SuiteError, load_suite, parse_suite,
)
from harness.spec import DTYPES, MODES, WORKLOADS
from harness.spec.names import NAME_RE

TORCH_VARIANTS = REGISTRY["torch"].variant_names


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
