"""The spec's layers as Flax NNX modules, loaded from harness.spec.weights.

The modules nest as harness.spec.params's sub-layers do, so each parameter's
path in the module's state is its table path and Flax's attribute for its role
(backends.common). Canonical weights are (in, out) and so are nnx.Linear
kernels: loading copies, nothing is transposed. The modules are built
abstractly (nnx.eval_shape), so no initializer ever draws a number; `Built`
holds the module split into its graphdef and a flat tuple of parameters, and
its `apply` is the pure function the backend jits, and its `decode` the decode
step's (each layer writes the new tokens' keys and values into its cache, then
attends over the whole cache). LayerNorm epsilon (Flax's default is 1e-6), its
float32 math and the tanh GELU are set from the spec.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

import backends.common as common
from backends.jax.attention import BHND, Core
from harness.spec import GELU_APPROXIMATE, LAYERNORM_EPS, MLP_RATIO, Case
from harness.spec.params import BIAS, GAIN, SHIFT, WEIGHT

# Flax's attribute for each role (nnx.Linear, nnx.LayerNorm).
ATTRIBUTES = {WEIGHT: "kernel", BIAS: "bias", GAIN: "scale", SHIFT: "bias"}


class LayerNorm(nnx.LayerNorm):
    """The spec's LayerNorm: float32 math whatever the storage dtype (dtype=float32
    promotes x, scale and bias), the biased variance computed as E[(x - mean)^2]
    rather than Flax's default E[x^2] - mean^2, and the result stored back in
    the input's dtype, as the torch backend does."""

    def __init__(self, d_model: int, *, param_dtype, rngs: nnx.Rngs):
        super().__init__(d_model, epsilon=LAYERNORM_EPS, dtype=jnp.float32,
                         param_dtype=param_dtype, use_fast_variance=False, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return super().__call__(x).astype(x.dtype)


def gelu(x: jax.Array) -> jax.Array:
    """GELU in its tanh form, computed in float32 and stored in x's dtype."""
    return jax.nn.gelu(x.astype(jnp.float32),
                       approximate=GELU_APPROXIMATE == "tanh").astype(x.dtype)


class Linear(nnx.Linear):
    """nnx.Linear with its bias added in float32, the sum stored in the input's
    dtype. The matmul is nnx.Linear's (storage dtype, the cell's precision); the
    float32 add makes the bias gradient, a sum over every row, accumulate in
    float32 as the reference does (docs/measurement.md, "JAX bias gradients")."""

    def __call__(self, x: jax.Array) -> jax.Array:
        y = self.dot_general(x, self.kernel[...], (((x.ndim - 1,), (0,)), ((), ())),
                             precision=self.precision)
        return (y.astype(jnp.float32) + self.bias[...].astype(jnp.float32)).astype(y.dtype)


def _linear(d_in: int, d_out: int, param_dtype, precision, rngs: nnx.Rngs) -> Linear:
    return Linear(d_in, d_out, param_dtype=param_dtype, precision=precision, rngs=rngs)


def write_last(cache: jax.Array, new: jax.Array, axis: int) -> jax.Array:
    """The cache with its last slots along `axis` (positions) overwritten by `new`:
    one dynamic_update_slice, done in place when the caller donates the cache."""
    start = [0] * cache.ndim
    start[axis] = cache.shape[axis] - new.shape[axis]
    return jax.lax.dynamic_update_slice(cache, new, tuple(start))


class MultiHeadAttention(nnx.Module):
    def __init__(self, d_model: int, heads: int, causal: bool, core: Core, *,
                 kv_heads: int, window: int | None, param_dtype, rngs: nnx.Rngs):
        self.heads, self.causal, self.window, self.core = heads, causal, window, core
        self.head_dim = d_model // heads
        p, kv_width = core.precision, kv_heads * (d_model // heads)   # grouped: narrower
        self.q = _linear(d_model, d_model, param_dtype, p, rngs)
        self.k = _linear(d_model, kv_width, param_dtype, p, rngs)
        self.v = _linear(d_model, kv_width, param_dtype, p, rngs)
        self.o = _linear(d_model, d_model, param_dtype, p, rngs)

    def _split(self, t: jax.Array) -> jax.Array:
        """(B, T, width) -> (B, T, heads, D) in the core's layout: head h owns
        features h*D:(h+1)*D."""
        b, n, _ = t.shape
        t = t.reshape(b, n, -1, self.head_dim)
        return t.transpose(0, 2, 1, 3) if self.core.layout == BHND else t

    def _attend(self, x: jax.Array, q: jax.Array, k: jax.Array, v: jax.Array,
                lengths: jax.Array | None = None) -> jax.Array:
        b, n, d = x.shape
        o = self.core(q, k, v, self.causal, self.window, lengths)
        if self.core.layout == BHND:
            o = o.transpose(0, 2, 1, 3)
        return self.o(o.reshape(b, n, d))

    def __call__(self, x: jax.Array, lengths: jax.Array | None = None) -> jax.Array:
        """lengths: a padded batch's (B,) sequence lengths, its keys past them hidden."""
        return self._attend(x, self._split(self.q(x)), self._split(self.k(x)),
                            self._split(self.v(x)), lengths)

    def decode(self, x: jax.Array, cache: tuple) -> tuple[jax.Array, tuple]:
        """x: the new tokens (B, T, d); cache: this layer's (k, v), N slots each in
        the core's layout. The tokens' keys and values overwrite the last T slots,
        then their queries attend over all N (the mask aligned bottom-right)."""
        axis = 2 if self.core.layout == BHND else 1
        k, v = (write_last(c, self._split(project(x)), axis)
                for c, project in zip(cache, (self.k, self.v)))
        return self._attend(x, self._split(self.q(x)), k, v), (k, v)


class Block(nnx.Module):
    """Pre-LN: h = x + mha(LN1(x)); out = h + W2 gelu(W1 LN2(h) + b1) + b2."""

    def __init__(self, d_model: int, heads: int, causal: bool, core: Core, *,
                 kv_heads: int, window: int | None, param_dtype, rngs: nnx.Rngs):
        p = core.precision
        self.ln1 = LayerNorm(d_model, param_dtype=param_dtype, rngs=rngs)
        self.mha = MultiHeadAttention(d_model, heads, causal, core, kv_heads=kv_heads,
                                      window=window, param_dtype=param_dtype, rngs=rngs)
        self.ln2 = LayerNorm(d_model, param_dtype=param_dtype, rngs=rngs)
        self.w1 = _linear(d_model, MLP_RATIO * d_model, param_dtype, p, rngs)
        self.w2 = _linear(MLP_RATIO * d_model, d_model, param_dtype, p, rngs)

    def _mlp(self, h: jax.Array) -> jax.Array:
        return h + self.w2(gelu(self.w1(self.ln2(h))))

    def __call__(self, x: jax.Array, lengths: jax.Array | None = None) -> jax.Array:
        return self._mlp(x + self.mha(self.ln1(x), lengths))

    def decode(self, x: jax.Array, cache: tuple) -> tuple[jax.Array, tuple]:
        a, cache = self.mha.decode(self.ln1(x), cache)
        return self._mlp(x + a), cache


class Transformer(nnx.Module):
    def __init__(self, d_model: int, heads: int, causal: bool, core: Core, layers: int, *,
                 kv_heads: int, window: int | None, param_dtype, rngs: nnx.Rngs):
        self.blocks = nnx.List([Block(d_model, heads, causal, core, kv_heads=kv_heads,
                                      window=window, param_dtype=param_dtype, rngs=rngs)
                                for _ in range(layers)])
        self.lnf = LayerNorm(d_model, param_dtype=param_dtype, rngs=rngs)

    def __call__(self, x: jax.Array, lengths: jax.Array | None = None) -> jax.Array:
        for block in self.blocks:
            x = block(x, lengths)
        return self.lnf(x)

    def decode(self, x: jax.Array, caches: tuple) -> tuple[jax.Array, tuple]:
        """caches: one (k, v) per block, in order."""
        written = []
        for block, cache in zip(self.blocks, caches):
            x, cache = block.decode(x, cache)
            written.append(cache)
        return self.lnf(x), tuple(written)


def _key(entry) -> object:
    """One step of a jax key path as a plain str/int."""
    for attr in ("key", "name", "idx"):
        if hasattr(entry, attr):
            return getattr(entry, attr)
    raise TypeError(f"unexpected key path entry {entry!r}")


class Built:
    """The workload split for jax.jit: a static graphdef and the parameters as
    one flat tuple (in `names` order), so the timed call hands jit plain arrays
    and no NNX object is touched outside tracing."""

    def __init__(self, case: Case, core: Core, param_dtype):
        # eval_shape: the module's structure with abstract parameters; the
        # initializers are traced, never run.
        abstract = nnx.eval_shape(lambda: common.workload_module(
            case, (MultiHeadAttention, Block, Transformer), core,
            param_dtype=param_dtype, rngs=nnx.Rngs(0)))
        self.graphdef, state = nnx.split(abstract)
        with_path, self.treedef = jax.tree_util.tree_flatten_with_path(state)
        by_path = {path: name for name, path in common.attribute_paths(case, ATTRIBUTES).items()}
        self.names, self.shapes = [], []
        for key_path, leaf in with_path:
            path = "/".join(str(_key(e)) for e in key_path if _key(e) != "value")
            if path not in by_path:
                raise KeyError(f"{case.workload}: parameter {path} has no canonical name")
            self.names.append(by_path[path])
            self.shapes.append(tuple(leaf.shape))
        missing = set(by_path.values()) - set(self.names)
        if missing:
            raise KeyError(f"{case.workload}: no parameter for {sorted(missing)}")

    def params(self, weights: dict, put) -> tuple:
        """The canonical weights, (in, out) as Flax keeps them, through `put`."""
        out = []
        for name, shape in zip(self.names, self.shapes):
            if weights[name].shape != shape:
                raise ValueError(f"{name}: shape {weights[name].shape}, module wants {shape}")
            out.append(put(weights[name]))
        return tuple(out)

    def apply(self, params: tuple, x: jax.Array, lengths: jax.Array | None = None) -> jax.Array:
        """The pure forward: rebuild the module from the parameters (at trace time
        only) and call it (lengths: a padded batch's, or None)."""
        return self._module(params)(x, lengths)

    def decode(self, params: tuple, x: jax.Array, caches: tuple) -> tuple[jax.Array, tuple]:
        """The pure decode step: (out, caches written), caches one (k, v) per layer."""
        module = self._module(params)
        if isinstance(module, Transformer):
            return module.decode(x, caches)
        out, cache = module.decode(x, caches[0])        # mha, block: one layer
        return out, (cache,)

    def _module(self, params: tuple):
        """The module rebuilt from the parameters (at trace time only)."""
        return nnx.merge(self.graphdef, jax.tree_util.tree_unflatten(self.treedef, params))
