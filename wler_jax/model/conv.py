"""A 2-D convolution layer whose kernel gradient is computed as matmuls (fast on XLA:CPU).

Why: XLA:CPU computes a convolution's forward pass and input gradient at near-matmul speed, but
its kernel (weight) gradient ~5-7x slower (9.6 GFLOP/s against 67 on a 96->128 3x3 layer;
per-layer figures in docs/performance.md, "CPU train step, part 1"); at the paper's widths that
one op made the JAX train step slower than PyTorch.
`Conv` here is `flax.linen.Conv` (NHWC, HWIO kernel, stride 1, same parameter names, shapes,
initialisers and dtype promotion, identical forward) with a `jax.custom_vjp` on the convolution:
  * forward and input gradient: `lax.conv_general_dilated` and its own VJP, as in nn.Conv;
  * kernel gradient: im2col in chunks of output rows,
        dW += dy_chunk^T @ patches_chunk     ([C_out, B*rows*W] @ [B*rows*W, K_h*K_w*C_in]),
    with each chunk of dy transposed to [C_out, B, rows, W] so that every matmul has XLA:CPU's
    fast (row-major, contract-inner) layout, and chunks of ~2048 positions (a `lax.fori_loop`) so that
    the patch matrix stays small and the matmul output wide. The contraction runs over (B, H, W)
    without reshaping the batch axis away, so a batch-sharded input (jit over a "data" mesh)
    gives partial sums that GSPMD all-reduces.

`impl` is explicit: "xla" (the plain `lax` convolution, exactly nn.Conv; GPUs and TPUs, where
cuDNN's weight gradient is fast), "matmul_grad" (every layer) or "matmul_grad_wide" (the matmul
kernel gradient for wide layers only, C_in * C_out >= AUTO_MIN_CHANNEL_PRODUCT: with few channels
the matmuls are thin and memory-bound and XLA's own kernel gradient is as fast or faster, measured
at widths 0.125 and 0.25, docs/performance.md, part 1). Which one a run uses is chosen once, where
the model is built, from the devices of the run (`spec.resolve_ops`); nothing here looks at the
backend.
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.linen import dtypes as flax_dtypes
from jax import lax

IMPLS = ("xla", "matmul_grad", "matmul_grad_wide")
# Output positions (B * rows * W_out) per chunk of the kernel gradient's im2col matmuls; ~2048
# was fastest on XLA:CPU for conv2..conv5 at paper width (docs/performance.md, "CPU train step,
# part 2").
KERNEL_GRAD_CHUNK_POSITIONS = 2048
# "matmul_grad_wide" uses the matmul kernel gradient for layers with at least this C_in * C_out
# (the paper-width conv2..conv5 and FCv1; none at widths <= 0.25). conv1 (C_in = 1) stays on
# XLA: its matmul gradient is ~2x faster alone at widths >= 0.5 but the train step did not
# measurably gain (docs/performance.md, "CPU train step", parts 1 and 2).
AUTO_MIN_CHANNEL_PRODUCT = 8192
_DIMENSION_NUMBERS = ("NHWC", "HWIO", "NHWC")

Padding = tuple[tuple[int, int], tuple[int, int]]


def resolve_impl(impl: str, c_in: int | None = None, c_out: int | None = None) -> str:
    """The implementation `impl` means for a layer of c_in -> c_out channels.

    "matmul_grad_wide" -> "matmul_grad" when c_in * c_out >= AUTO_MIN_CHANNEL_PRODUCT (or when
    the channels are not given), "xla" otherwise; "xla" / "matmul_grad" unchanged.
    """
    if impl not in IMPLS:
        raise ValueError(f"conv impl must be one of {IMPLS}, got {impl!r}")
    if impl == "matmul_grad_wide":
        if c_in is not None and c_out is not None and c_in * c_out < AUTO_MIN_CHANNEL_PRODUCT:
            return "xla"
        return "matmul_grad"
    return impl


def _pairs(padding: str | Sequence[tuple[int, int]], in_hw: Sequence[int],
           kernel_hw: Sequence[int]) -> Padding:
    """Explicit ((top, bottom), (left, right)) padding for stride 1 from "SAME"/"VALID"/pairs."""
    if isinstance(padding, str):
        pads = lax.padtype_to_pads(tuple(in_hw), tuple(kernel_hw), (1, 1), padding.upper())
    else:
        pads = padding
    return tuple((int(lo), int(hi)) for lo, hi in pads)  # type: ignore[return-value]


def _lax_conv(x: jax.Array, kernel: jax.Array, padding: Padding) -> jax.Array:
    return lax.conv_general_dilated(x, kernel, (1, 1), padding,
                                    dimension_numbers=_DIMENSION_NUMBERS)


def kernel_grad(x: jax.Array, dy: jax.Array, kernel_hw: Sequence[int], padding: Padding,
                out_dtype: Any = None, chunk_rows: int | None = None) -> jax.Array:
    """Kernel gradient of a stride-1 NHWC/HWIO convolution, as matmuls.

    The output rows are taken in chunks of `chunk_rows` (all examples at once): for each chunk
    the im2col patch matrix [B * rows * W_out, K_h * K_w * C_in] is built and
    dW += dy_chunk @ patches, in a
    `lax.fori_loop` (a remainder chunk after it). Small chunks keep the patch matrix in cache
    and the matmul's output wide (K*K*C_in columns), which is what XLA:CPU's GEMM is fast at
    (docs/performance.md, "CPU train step, part 2"). By default a chunk holds
    ~KERNEL_GRAD_CHUNK_POSITIONS output positions.

    Args:
      x: [B, H, W, C_in] the convolution's input.
      dy: [B, H_out, W_out, C_out] cotangent of its output.
      kernel_hw: (K_h, K_w).
      padding: ((top, bottom), (left, right)) zero padding of x.
      out_dtype: dtype of the result (default x.dtype); matmuls accumulate in float32.
      chunk_rows: output rows per chunk (default from KERNEL_GRAD_CHUNK_POSITIONS).
    Returns:
      [K_h, K_w, C_in, C_out] = d<y, dy>/dW.
    """
    kh, kw = kernel_hw
    b, h_out, w_out, c_out = dy.shape
    c_in = x.shape[-1]
    out_dtype = x.dtype if out_dtype is None else out_dtype
    acc = jnp.promote_types(jnp.float32, jnp.result_type(x.dtype, dy.dtype))
    if chunk_rows is None:
        chunk_rows = max(1, KERNEL_GRAD_CHUNK_POSITIONS // max(1, b * w_out))
    rows = min(max(1, int(chunk_rows)), h_out)
    xp = jnp.pad(x, ((0, 0), *padding, (0, 0)))
    contract = (((1, 2, 3), (0, 1, 2)), ((), ()))

    def chunk(start, n):  # dW over output rows [start, start + n), [C_out, K_h*K_w*C_in]
        xs = lax.dynamic_slice_in_dim(xp, start, n + kh - 1, axis=1)
        patches = [xs[:, i:i + n, j:j + w_out] for i in range(kh) for j in range(kw)]
        patches = patches[0] if len(patches) == 1 else jnp.concatenate(patches, axis=-1)
        # [C_out, B, n, W_out]: the contract-inner layout; transposed per chunk (in cache).
        d = jnp.transpose(lax.dynamic_slice_in_dim(dy, start, n, axis=1), (3, 0, 1, 2))
        return lax.dot_general(d, patches, contract, preferred_element_type=acc)

    full, rest = divmod(h_out, rows)
    if full == 1:
        g = chunk(0, rows)
    else:
        g = lax.fori_loop(0, full, lambda k, a: a + chunk(k * rows, rows),
                          jnp.zeros((c_out, kh * kw * c_in), acc))
    if rest:
        g = g + chunk(full * rows, rest)
    return g.reshape(c_out, kh, kw, c_in).transpose(1, 2, 3, 0).astype(out_dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def conv_matmul_grad(x: jax.Array, kernel: jax.Array, padding: Padding) -> jax.Array:
    """Stride-1 NHWC/HWIO convolution (= `lax.conv_general_dilated`) with a matmul kernel grad.

    Args:
      x: [B, H, W, C_in].
      kernel: [K_h, K_w, C_in, C_out], same dtype as x.
      padding: ((top, bottom), (left, right)) as ints (static).
    Returns:
      [B, H + top + bottom - K_h + 1, W + left + right - K_w + 1, C_out].
    """
    return _lax_conv(x, kernel, padding)


def _fwd(x, kernel, padding):
    return _lax_conv(x, kernel, padding), (x, kernel)


def _bwd(padding, res, dy):
    x, kernel = res
    _, input_vjp = jax.vjp(lambda x_: _lax_conv(x_, kernel, padding), x)
    (dx,) = input_vjp(dy)
    dk = kernel_grad(x, dy, kernel.shape[:2], padding, out_dtype=kernel.dtype)
    return dx, dk


conv_matmul_grad.defvjp(_fwd, _bwd)


def conv2d(x: jax.Array, kernel: jax.Array, padding: str | Sequence[tuple[int, int]] = "SAME",
           impl: str = "xla") -> jax.Array:
    """Stride-1 NHWC x HWIO convolution, no bias; `impl` as in `Conv`.

    Args:
      x: [B, H, W, C_in]; kernel: [K_h, K_w, C_in, C_out] (same dtype).
      padding: "SAME", "VALID" or ((top, bottom), (left, right)).
      impl: "xla" | "matmul_grad" | "matmul_grad_wide".
    Returns:
      [B, H_out, W_out, C_out].
    """
    pads = _pairs(padding, x.shape[1:3], kernel.shape[:2])
    if resolve_impl(impl, kernel.shape[2], kernel.shape[3]) == "xla":
        return _lax_conv(x, kernel, pads)
    return conv_matmul_grad(x, kernel, pads)


class Conv(nn.Module):
    """`flax.linen.Conv` for 4-D NHWC input, stride 1, no dilation/groups, with a choice of
    kernel-gradient implementation.

    Parameters "kernel" [K_h, K_w, C_in, features] and "bias" [features] exactly as nn.Conv
    (checkpoints and parameter converters do not see the difference), and the same dtype rule:
    input, kernel and bias are promoted to `dtype` (inferred from them when None).

    Attributes:
      features: output channels.
      kernel_size: (K_h, K_w).
      padding: "SAME", "VALID" or ((top, bottom), (left, right)).
      use_bias: add a bias.
      dtype: compute dtype (None: from the input and params); param_dtype: parameter dtype.
      kernel_init, bias_init: initialisers (nn.Conv's defaults).
      impl: "matmul_grad" (custom VJP, kernel gradient as matmuls), "xla" (plain lax conv,
        = nn.Conv), or "matmul_grad_wide" (matmul_grad for wide layers only, see `resolve_impl`).
    """

    features: int
    kernel_size: Sequence[int]
    padding: Any = "SAME"
    use_bias: bool = True
    dtype: Any = None
    param_dtype: Any = jnp.float32
    kernel_init: Callable = nn.initializers.lecun_normal()
    bias_init: Callable = nn.initializers.zeros_init()
    impl: str = "xla"

    @nn.compact
    def __call__(self, x: jax.Array, *, separate_bias: bool = False):
        """x: [B, H, W, C_in] -> [B, H_out, W_out, features].

        With separate_bias=True, returns (convolution without the bias, bias [features] in the
        compute dtype, or None without a bias) so that a following op can add it itself (e.g.
        `relu_max_pool.relu_max_pool_2x2`, which adds it after pooling).
        """
        if x.ndim != 4:
            raise ValueError(f"Conv takes [B, H, W, C] input, got shape {x.shape}")
        kh, kw = tuple(self.kernel_size)
        kernel = self.param("kernel", self.kernel_init, (kh, kw, x.shape[-1], self.features),
                            self.param_dtype)
        bias = (self.param("bias", self.bias_init, (self.features,), self.param_dtype)
                if self.use_bias else None)
        x, kernel, bias = flax_dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
        y = conv2d(x, kernel, self.padding, self.impl)
        if separate_bias:
            return y, bias
        if bias is not None:
            y = y + bias.reshape((1, 1, 1, -1))
        return y

