"""Analytic FLOPs and memory (docs/measurement.md's convention), against numbers worked out
by hand. B=2, H=8, N=1024, D=64 (d_model 512) makes every term a power of two:
core = 4*2*8*1024^2*64 = 2^32, mha projections 8*2*1024*512^2 = 2^32, block MLP 2^33."""
import pytest

from harness.spec import Case
from harness.spec.costs import attention_flops, flops, memory, reference_bytes


def case(workload, mode="forward", causal=False, dtype="float32", batch=2, seq_len=1024,
         heads=8, head_dim=64, layers=1):
    return Case("unit", workload, "torch", "eager", mode, dtype, "cpu",
                batch, seq_len, heads, head_dim, causal, layers)


@pytest.mark.parametrize("workload, mode, causal, layers, expected", [
    ("attention", "forward", False, 1, 4294967296),    # 4*2*8*1024^2*64 = 2^32
    ("attention", "forward", True, 1, 2147483648),     # causal: 2^32 / 2
    ("attention", "train", False, 1, 15032385536),     # 3.5 * 2^32
    ("attention", "train", True, 1, 7516192768),       # 3.5 * 2^31
    ("mha", "forward", False, 1, 8589934592),          # 8*2*1024*512^2 = 2^32, + core 2^32
    ("mha", "forward", True, 1, 6442450944),           # 2^32 + 2^31
    ("mha", "train", False, 1, 27917287424),           # 3 * 2^32 + 3.5 * 2^32 = 6.5 * 2^32
    ("block", "forward", False, 1, 17179869184),       # (8+16)*2*1024*512^2 = 3*2^32, + 2^32
    ("block", "forward", False, 3, 17179869184),       # `layers` is ignored outside transformer
    ("block", "train", False, 1, 53687091200),         # 3 * 3*2^32 + 3.5*2^32 = 12.5 * 2^32
    ("transformer", "forward", False, 3, 51539607552),  # 3 layers * 4*2^32
    ("transformer", "train", True, 2, 92341796864),    # 2 * (3*3*2^32 + 3.5*2^31) = 21.5*2^32
])
def test_flops_by_hand(workload, mode, causal, layers, expected):
    assert flops(case(workload, mode, causal, layers=layers)) == expected


def test_flops_on_a_shape_that_is_not_a_power_of_two():
    # B=1, H=3, N=100, D=10, d=30: core 4*1*3*100^2*10 = 1_200_000, causal 600_000,
    # train causal 3.5*600_000 = 2_100_000; block dense 24*1*100*30^2 = 2_160_000, x3 in train.
    small = dict(batch=1, seq_len=100, heads=3, head_dim=10)
    assert attention_flops(case("attention", **small)) == 1_200_000
    assert flops(case("mha", **small)) == 1_920_000              # 8*100*900 + 1_200_000
    assert flops(case("block", "train", True, **small)) == 8_580_000   # 6_480_000 + 2_100_000
    assert isinstance(flops(case("block", "train", True, **small)), int)


def test_flops_do_not_depend_on_dtype_backend_or_device():
    base = case("block", "train")
    for other in (base.replace(dtype="bfloat16"), base.replace(backend="jax", variant="jit"),
                  base.replace(device="cuda:0")):
        assert flops(other) == flops(base)


def test_memory_attention_bfloat16():
    # q, k, v: 2*1024*8*64 = 2^20 elements each, 2 bytes each.
    fwd = memory(case("attention", dtype="bfloat16"))
    assert fwd == {"resident_bytes": 6291456,     # 3 * 2^20 * 2
                   "output_bytes": 2097152,       # out: 2^20 * 2
                   "scores_bytes": 33554432}      # 2*8*1024^2 * 2
    train = memory(case("attention", "train", dtype="bfloat16"))
    assert train == {"resident_bytes": 8388608,   # q, k, v, g: 4 * 2^20 * 2
                     "output_bytes": 8388608,     # out + dq, dk, dv: 4 * 2^20 * 2
                     "scores_bytes": 33554432}


def test_memory_mha_tf32_stores_float32():
    # weights 4*(512^2 + 512) = 1_050_624; x 2*1024*512 = 1_048_576; 4 bytes each.
    fwd = memory(case("mha", dtype="tf32"))
    assert fwd == {"resident_bytes": 8396800,     # 4 * (1_050_624 + 1_048_576)
                   "output_bytes": 4194304,       # 4 * 1_048_576
                   "scores_bytes": 67108864}      # 4 * 2*8*1024^2
    train = memory(case("mha", "train", dtype="tf32"))
    assert train["resident_bytes"] == 12591104    # 4 * (1_050_624 + 2 * 1_048_576): x and g
    assert train["output_bytes"] == 12591104      # 4 * (out + dW + dx) = 4 * 3_147_776


def test_memory_block_and_transformer_small():
    # B=1, N=4, H=2, D=3: d=6, MLP 24. Block weights: 4*(36+6) + 4*6 + (144+24) + (144+6)
    # = 510; x: 1*4*6 = 24.
    small = dict(batch=1, seq_len=4, heads=2, head_dim=3)
    assert memory(case("block", **small)) == {
        "resident_bytes": 2136,                   # 4 * (510 + 24)
        "output_bytes": 96,                       # 4 * 24
        "scores_bytes": 128}                      # 4 * 1*2*4*4
    # 2 layers + lnf_g, lnf_b: 2*510 + 12 = 1032 weights; x and g 48; bfloat16.
    assert memory(case("transformer", "train", dtype="bfloat16", layers=2, **small)) == {
        "resident_bytes": 2160,                   # 2 * (1032 + 48)
        "output_bytes": 2160,                     # 2 * (24 out + 1032 dW + 24 dx)
        "scores_bytes": 64}                       # 2 * 1*2*4*4, one matrix


def test_reference_bytes_counts_the_attention_matrices():
    # B*H*N^2 = 1*8*2048^2 = 33554432 matrices' elements; 3 float64 + 3 float32 each
    # -> 33554432 * 36 = 1207959552 bytes in forward; a 2-layer train keeps both layers'.
    fwd = Case("t", "mha", "torch", "sdpa", "forward", "float32", "cpu", 1, 2048, 8, 64, False, 1)
    assert reference_bytes(fwd) == 1207959552
    train = fwd.replace(workload="transformer", mode="train", layers=2)
    assert reference_bytes(train) == 2 * 1207959552


def test_a_train_step_moves_its_saved_activations_twice():
    """Written by the forward, read by the backward: the core keeps its output and a
    log-sum-exp a row and head; a block keeps 11 d a token more than mha (two
    LayerNorm inputs, the MLP's input, its 4d hidden layer twice); a stack's layers
    add up, with its final LayerNorm's input once."""
    from harness.spec.costs import bytes_moved, saved_activations
    b, n, h, dh = 2, 1024, 8, 64
    d = h * dh
    assert saved_activations(case("mha")) == 0                          # forward: none
    assert saved_activations(case("attention", "train")) == b * n * (d + h)
    mha, block = (saved_activations(case(w, "train")) for w in ("mha", "block"))
    assert block - mha == b * n * 11 * d
    one, two = (saved_activations(case("transformer", "train", layers=k)) for k in (1, 2))
    assert two - one == block and one == block + b * n * d
    fwd, train = case("attention"), case("attention", "train")
    reads_writes = memory(train)["resident_bytes"] + memory(train)["output_bytes"]
    assert bytes_moved(train) - reads_writes == 4 * 2 * b * n * (d + h)
    assert bytes_moved(fwd) == memory(fwd)["resident_bytes"] + memory(fwd)["output_bytes"]
