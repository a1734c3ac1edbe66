"""Analytic FLOPs and memory of a Case, by one stated convention.

FLOPs (docs/measurement.md, the FlashAttention benchmarks' convention):
- attention core forward: 4*B*H*D times the area the mask leaves visible, positions
  taken as continuous: 4*B*H*N^2*D without a mask, half causal; q_len*N with fewer
  queries (q_len*N - q_len^2/2 causal: half a pair a query under the exact count);
  about window*q_len under a window; a padded batch sums its sequences, each of its
  own length; train is 3.5x forward (backward is 2.5x);
- projections of mha: 4*T*d^2 for Q and O, 4*T*d*(kv_heads*D) for K and V, T the
  tokens (B*N, or B*q_len in decode, or those not padding; 8*T*d^2 with as many key/value heads as
  query heads); the MLP of a block: 16*T*d^2; grouped heads leave the core's
  count as it is; a matmul's backward is 2x its forward, so train is 3x;
- softmax, LayerNorm, GELU, bias adds and residuals are not counted.

Memory, in the Case's storage dtype (tf32 stores float32):
- resident_bytes: weights and inputs (g included in train mode), on the device
  before the step starts;
- output_bytes: what one step returns: the output, and in train mode a gradient
  for every input and weight;
- scores_bytes: one B x H x q_len x N attention matrix. A naive implementation
  materializes several per layer (scores, probabilities; train keeps the
  probabilities of every layer for the backward); fused kernels materialize none.
Measured peak_mem_bytes (memory.py) excludes resident_bytes: it is what the step
adds, so it compares with output_bytes plus the scores the implementation keeps.
"""
from __future__ import annotations

from math import prod

from harness.spec import Case, padding
from harness.spec.precision import ITEMSIZE
from harness.spec.weights import input_shapes, weight_shapes


def visible_area_x2(case: Case) -> int:
    """Twice the area the mask leaves visible in the (query position, key position)
    plane, positions taken as continuous (FlashAttention's N^2/2 for a causal square):
    the queries sit at seq_len - q_len to seq_len (bottom-right), the one at p sees
    keys up to p (causal) and past p - window (a window). Twice, to stay an integer.
    A padded batch: the sum over its sequences, each a square of its own length
    (harness.spec.padding), so the count is per sequence already."""
    lengths = padding.key_lengths(case)
    if lengths is not None:
        return sum(_area_x2(int(n), int(n), case.causal, case.window) for n in lengths)
    return _area_x2(case.seq_len, case.q_len, case.causal, case.window)


def _area_x2(n: int, q_len: int, causal: bool, window: int | None) -> int:
    first = n - q_len
    if not causal:
        return 2 * q_len * n
    w = window or n
    ramp_end = min(n, max(first, w))            # up to here a query sees p keys, then w
    return ramp_end ** 2 - first ** 2 + 2 * w * (n - ramp_end)


def attention_flops(case: Case) -> int:
    """4 FLOPs per visible (query, key) pair and head_dim: q k^T and p v, 2 each."""
    sequences = 1 if case.lengths else case.batch     # a padded batch's area sums them
    return 2 * sequences * case.heads * case.head_dim * visible_area_x2(case)


def tokens(case: Case) -> int:
    """Rows the projections and the MLP run on: the new tokens in decode mode; the
    tokens that are not padding in a padded batch."""
    if case.mode == "decode":
        return case.batch * case.q_len
    return padding.valid_tokens(case)


def flops(case: Case) -> int:
    """Floating-point operations of one step (forward, or forward + backward)."""
    train = case.mode == "train"
    d = case.d_model
    core = attention_flops(case)
    core = core * 7 // 2 if train else core          # 3.5x, exact in integers
    if case.workload == "attention":
        return core
    kv = case.kv_heads * case.head_dim
    dense = 4 * tokens(case) * d * (d + kv)          # Q and O, then K and V
    if case.workload in ("block", "transformer"):
        dense += 16 * tokens(case) * d * d           # the MLP, width 4d
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
        "scores_bytes": size * case.batch * case.heads * case.q_len * case.seq_len,
    }


def saved_activations(case: Case) -> int:
    """Elements a train step's forward keeps for its backward (written once, read once):
    the input of every matmul and of every nonlinearity, and the attention core's
    output and softmax log-sum-exp per query row (what FlashAttention keeps; no score
    matrix). Per token of a layer: mha's input, q, k, v, the core's output and one
    log-sum-exp per head; a block adds its two LayerNorm inputs, the MLP's input and
    its 4d hidden layer before and after GELU; a stack adds the final LayerNorm's input.
    Zero outside train mode."""
    if case.mode != "train":
        return 0
    heads, d, kv = case.heads, case.d_model, case.kv_heads * case.head_dim
    if case.workload == "attention":
        rows = padding.valid_tokens(case) if case.lengths else case.batch * case.q_len
        return rows * (d + heads)
    per_token = d + d + 2 * kv + d + heads                     # x, q, k and v, o, lse
    if case.workload in ("block", "transformer"):
        per_token += 3 * d + 8 * d                             # LN1, LN2, MLP in; 4d twice
    final = d if case.workload == "transformer" else 0
    return tokens(case) * (case.n_layers * per_token + final)


def bytes_moved(case: Case) -> int:
    """The least a step must move to or from device memory: read every weight and
    input once (but the keys and values a window hides from every query), write every
    output once and, in decode mode, the new tokens' keys and values into the caches;
    in a padded batch, the activations of its tokens alone (a varlen kernel skips
    padding); in train mode, every saved activation written and read back once
    (saved_activations). Decoding is bound by it, not by FLOPs."""
    mem, size = memory(case), ITEMSIZE[case.dtype]
    weights = sum(prod(s) for s in weight_shapes(case).values())
    weights *= 2 if case.mode == "train" else 1                  # and their gradients
    activations = (mem["resident_bytes"] + mem["output_bytes"]) // size - weights
    activations = activations * padding.valid_tokens(case) // (case.batch * case.seq_len)
    per_key = 2 * case.n_layers * case.batch * case.kv_heads * case.head_dim   # k and v
    cache_writes = 0
    if case.mode == "decode" and case.workload != "attention":
        cache_writes = per_key * (tokens(case) // case.batch)
    # Keys given as inputs (the core's k and v, a decode step's caches) that a window
    # hides from every query need not be read.
    unread = 0
    if case.window and (case.workload == "attention" or case.mode == "decode"):
        unread = per_key * max(0, case.q_offset - case.window + 1)
    saved = 2 * saved_activations(case)
    return size * (weights + activations + saved + cache_writes - unread)


def reference_bytes(case: Case) -> int:
    """Rough host memory of the full float64 reference and its low-precision twin,
    were they to keep every attention matrix (float64 scores, probabilities and their
    gradients, a float32 copy of each; train keeps every layer's): past
    sampling.FULL_REFERENCE_LIMIT_BYTES a cell is judged on sampled rows instead."""
    scores = case.batch * case.heads * case.q_len * case.seq_len
    layers = case.n_layers if case.mode == "train" else 1
    return scores * (3 * 8 + 3 * 4) * layers
