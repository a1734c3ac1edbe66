"""Analytic FLOPs and memory of a Case, by one stated convention.

FLOPs (docs/measurement.md, the FlashAttention benchmarks' convention):
- attention core forward: 4*B*H*N^2*D; causal counts half; train is 3.5x forward
  (backward is 2.5x);
- projections of mha: 4*B*N*d^2 for Q and O, 4*B*N*d*(kv_heads*D) for K and V
  (8*B*N*d^2 with as many key/value heads as query heads); the MLP of a block:
  16*B*N*d^2; grouped heads leave the core's count as it is; a matmul's
  backward is 2x its forward, so train is 3x;
- softmax, LayerNorm, GELU, bias adds and residuals are not counted.

Memory, in the Case's storage dtype (tf32 stores float32):
- resident_bytes: weights and inputs (g included in train mode), on the device
  before the step starts;
- output_bytes: what one step returns: the output, and in train mode a gradient
  for every input and weight;
- scores_bytes: one B x H x N x N attention matrix. A naive implementation
  materializes several per layer (scores, probabilities; train keeps the
  probabilities of every layer for the backward); fused kernels materialize none.
Measured peak_mem_bytes (memory.py) excludes resident_bytes: it is what the step
adds, so it compares with output_bytes plus the scores the implementation keeps.
"""
from __future__ import annotations

from math import prod

from harness.spec import Case
from harness.spec.precision import ITEMSIZE
from harness.spec.weights import input_shapes, weight_shapes


def attention_flops(case: Case) -> int:
    core = 4 * case.batch * case.heads * case.seq_len ** 2 * case.head_dim
    return core // 2 if case.causal else core


def flops(case: Case) -> int:
    """Floating-point operations of one step (forward, or forward + backward)."""
    train = case.mode == "train"
    b, n, d = case.batch, case.seq_len, case.d_model
    core = attention_flops(case)
    core = core * 7 // 2 if train else core          # 3.5x, exact in integers
    if case.workload == "attention":
        return core
    kv = case.kv_heads * case.head_dim
    dense = 4 * b * n * d * d + 4 * b * n * d * kv   # Q and O, then K and V
    if case.workload in ("block", "transformer"):
        dense += 16 * b * n * d * d                  # the MLP, width 4d
    if train:
        dense *= 3
    return case.n_layers * (dense + core)


def memory(case: Case) -> dict[str, int]:
    size = ITEMSIZE[case.dtype]
    weights = sum(prod(s) for s in weight_shapes(case).values())
    inputs = input_shapes(case)
    out_elems = prod(inputs["q" if case.workload == "attention" else "x"])
    input_elems = sum(prod(s) for s in inputs.values())
    grads = weights + sum(prod(s) for k, s in inputs.items() if k != "g")
    output = out_elems + (grads if case.mode == "train" else 0)
    return {
        "resident_bytes": size * (weights + input_elems),
        "output_bytes": size * output,
        "scores_bytes": size * case.batch * case.heads * case.seq_len ** 2,
    }


def reference_bytes(case: Case) -> int:
    """Rough host memory of the full float64 reference and its low-precision twin,
    were they to keep every attention matrix (float64 scores, probabilities and their
    gradients, a float32 copy of each; train keeps every layer's): past
    sampling.FULL_REFERENCE_LIMIT_BYTES a cell is judged on sampled rows instead."""
    scores = case.batch * case.heads * case.seq_len ** 2
    layers = case.n_layers if case.mode == "train" else 1
    return scores * (3 * 8 + 3 * 4) * layers
