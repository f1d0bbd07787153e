"""A 2-D convolution layer whose kernel gradient is computed as matmuls (fast on XLA:CPU).

Why: XLA:CPU computes a convolution's forward pass and input gradient at near-matmul speed, but
its kernel (weight) gradient ~5-7x slower (9.6 GFLOP/s against 67 on a 96->128 3x3 layer, see
bench/README.md); at the paper's widths that one op made the JAX train step slower than PyTorch.
`Conv` here is `flax.linen.Conv` (NHWC, HWIO kernel, stride 1, same parameter names, shapes,
initialisers and dtype promotion, identical forward) with a `jax.custom_vjp` on the convolution:
  * forward and input gradient: `lax.conv_general_dilated` and its own VJP, as in nn.Conv;
  * kernel gradient: for each tap (i, j) of the K_h x K_w kernel,
        dW[i, j] = dy^T @ x_pad[:, i:i+H_out, j:j+W_out]     ([C_out, B*H*W] @ [B*H*W, C_in]),
    with dy transposed once to [C_out, B, H, W] so that every matmul has XLA:CPU's fast
    (row-major, contract-inner) layout, or, when the im2col copy is small (thin inputs such as
    conv1's single channel, or short late layers), one matmul against the [B*H*W, K*K*C_in]
    patch matrix. The contraction runs over (B, H, W) without reshaping the batch axis away, so a
    batch-sharded input (jit over a "data" mesh) gives partial sums that GSPMD all-reduces.

`impl="auto"` picks the matmul kernel gradient on the CPU backend (chosen when traced) for
wide layers (C_in * C_out >= AUTO_MIN_CHANNEL_PRODUCT) only: with few channels the matmuls are
thin and memory-bound and XLA's own kernel gradient is as fast or faster (measured at widths
0.125 and 0.25, bench/README.md). Elsewhere (GPUs: cuDNN's weight gradient is fast) "auto" is the
plain `lax` convolution, exactly nn.Conv.
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.linen import dtypes as flax_dtypes
from jax import lax

IMPLS = ("auto", "xla", "matmul_grad")
# Patch matrices up to this many bytes are built (im2col, one matmul); larger inputs use one
# matmul per kernel tap on shifted views. Measured on XLA:CPU (bench/README.md).
IM2COL_MAX_BYTES = 128 * 2**20
# "auto" uses the matmul kernel gradient on CPU for layers with at least this C_in * C_out
# (the paper-width conv2..conv5 and FCv1; none at widths <= 0.25). conv1 (C_in = 1) stays on
# XLA: its matmul gradient is ~2x faster alone at widths >= 0.5 but the train step did not
# measurably gain (bench/README.md).
AUTO_MIN_CHANNEL_PRODUCT = 8192
_DIMENSION_NUMBERS = ("NHWC", "HWIO", "NHWC")

Padding = tuple[tuple[int, int], tuple[int, int]]


def resolve_impl(impl: str, c_in: int | None = None, c_out: int | None = None) -> str:
    """The implementation `impl` means for a layer of c_in -> c_out channels.

    "auto" -> "matmul_grad" on the CPU backend when c_in * c_out >= AUTO_MIN_CHANNEL_PRODUCT
    (or when the channels are not given), "xla" otherwise; "xla" / "matmul_grad" unchanged.
    """
    if impl not in IMPLS:
        raise ValueError(f"conv impl must be one of {IMPLS}, got {impl!r}")
    if impl == "auto":
        if jax.default_backend() != "cpu":
            return "xla"
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
                out_dtype: Any = None) -> jax.Array:
    """Kernel gradient of a stride-1 NHWC/HWIO convolution, as matmuls.

    Args:
      x: [B, H, W, C_in] the convolution's input.
      dy: [B, H_out, W_out, C_out] cotangent of its output.
      kernel_hw: (K_h, K_w).
      padding: ((top, bottom), (left, right)) zero padding of x.
      out_dtype: dtype of the result (default x.dtype); matmuls accumulate in float32.
    Returns:
      [K_h, K_w, C_in, C_out] = d<y, dy>/dW.
    """
    kh, kw = kernel_hw
    b, h_out, w_out, c_out = dy.shape
    c_in = x.shape[-1]
    out_dtype = x.dtype if out_dtype is None else out_dtype
    acc = jnp.promote_types(jnp.float32, jnp.result_type(x.dtype, dy.dtype))
    xp = jnp.pad(x, ((0, 0), *padding, (0, 0)))
    dy_t = jnp.transpose(dy, (3, 0, 1, 2))  # [C_out, B, H_out, W_out]: contract-inner layout
    contract = (((1, 2, 3), (0, 1, 2)), ((), ()))
    views = [(i, j) for i in range(kh) for j in range(kw)]
    patch_bytes = b * h_out * w_out * kh * kw * c_in * jnp.dtype(x.dtype).itemsize
    if kh * kw == 1 or patch_bytes <= IM2COL_MAX_BYTES:
        patches = [xp[:, i:i + h_out, j:j + w_out] for i, j in views]
        patches = patches[0] if len(patches) == 1 else jnp.concatenate(patches, axis=-1)
        g = lax.dot_general(dy_t, patches, contract, preferred_element_type=acc)  # [Co, KK*Ci]
        g = g.reshape(c_out, kh, kw, c_in)
    else:
        g = jnp.stack([lax.dot_general(dy_t, xp[:, i:i + h_out, j:j + w_out], contract,
                                       preferred_element_type=acc) for i, j in views])
        g = g.reshape(kh, kw, c_out, c_in).transpose(2, 0, 1, 3)
    return g.transpose(1, 2, 3, 0).astype(out_dtype)


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
           impl: str = "auto") -> jax.Array:
    """Stride-1 NHWC x HWIO convolution, no bias; `impl` as in `Conv`.

    Args:
      x: [B, H, W, C_in]; kernel: [K_h, K_w, C_in, C_out] (same dtype).
      padding: "SAME", "VALID" or ((top, bottom), (left, right)).
      impl: "auto" | "xla" | "matmul_grad".
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
        = nn.Conv), or "auto" (matmul_grad on the CPU backend for wide layers, see
        `resolve_impl`; xla elsewhere).
    """

    features: int
    kernel_size: Sequence[int]
    padding: Any = "SAME"
    use_bias: bool = True
    dtype: Any = None
    param_dtype: Any = jnp.float32
    kernel_init: Callable = nn.initializers.lecun_normal()
    bias_init: Callable = nn.initializers.zeros_init()
    impl: str = "auto"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """x: [B, H, W, C_in] -> [B, H_out, W_out, features]."""
        if x.ndim != 4:
            raise ValueError(f"Conv takes [B, H, W, C] input, got shape {x.shape}")
        kh, kw = tuple(self.kernel_size)
        kernel = self.param("kernel", self.kernel_init, (kh, kw, x.shape[-1], self.features),
                            self.param_dtype)
        bias = (self.param("bias", self.bias_init, (self.features,), self.param_dtype)
                if self.use_bias else None)
        x, kernel, bias = flax_dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
        y = conv2d(x, kernel, self.padding, self.impl)
        if bias is not None:
            y = y + bias.reshape((1, 1, 1, -1))
        return y

