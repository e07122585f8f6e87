"""MatMul forms of the library's two attention layers, for export only.

denoising-diffusion-pytorch 1.8.3 writes its attention with ``torch.einsum``;
onnxruntime's CPU ``Einsum`` kernel is slower than ``MatMul`` on the same
contraction (about 10-15 % of the whole U-Net at 96 px, measured).  These
forwards compute the same products in the same order with ``torch.matmul``, and the
linear attention's q, k and v come from three 1 x 1 convolutions on the thirds of its
``to_qkv`` weights instead of one convolution whose output is then split (copied): on
lung1's body passes the residuals are bit-identical, onnxruntime's kernels take 14 % less
time (``benchmarks/profile_onnx.py --shape 464x512``) and a slice 2-16 % less
(``benchmarks/bench_graphs.py``, three runs on a noisy host).
They are bound to the modules of a *copy* of the U-Net that is exported, so the
library's own model, which the parity check compares against, stays untouched.
"""

from __future__ import annotations

import copy
import types

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from btd_core.model.diffusion import ddp  # imports the library quietly first

Attend = ddp.Attend
LinearAttention = ddp.LinearAttention


def _linear_attention_forward(self: LinearAttention, x: torch.Tensor) -> torch.Tensor:
    h, w = x.shape[-2:]
    x = self.norm(x)
    # three 1 x 1 convolutions on the thirds of the weights instead of one and a split of its
    # output: the same products, without copying q, k and v out of one large tensor
    qkv = (F.conv2d(x, weight) for weight in self.to_qkv.weight.chunk(3, dim=0))
    q, k, v = (rearrange(t, "b (h c) x y -> b h c (x y)", h=self.heads) for t in qkv)
    q = q.softmax(dim=-2)
    k = k.softmax(dim=-1)
    q = q * self.scale
    context = torch.matmul(k, v.transpose(-1, -2))  # einsum 'b h d n, b h e n -> b h d e'
    out = torch.matmul(context.transpose(-1, -2), q)  # einsum 'b h d e, b h d n -> b h e n'
    out = rearrange(out, "b h c (x y) -> b (h c) x y", h=self.heads, x=h, y=w)
    return self.to_out(out)


def _attend_forward(
    self: Attend, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor
) -> torch.Tensor:
    if self.flash:
        raise ValueError("flash attention is not used by BTD's model")
    scale = q.shape[-1] ** -0.5
    sim = torch.matmul(q, k.transpose(-1, -2)) * scale  # einsum 'b h i d, b h j d -> b h i j'
    attn = self.attn_dropout(sim.softmax(dim=-1))
    return torch.matmul(attn, v)  # einsum 'b h i j, b h j d -> b h i d'


def with_matmul_attention(unet: nn.Module) -> nn.Module:
    """A deep copy of ``unet`` whose attention layers use ``torch.matmul``; same weights."""
    twin = copy.deepcopy(unet)
    for module in twin.modules():
        if isinstance(module, LinearAttention):
            module.forward = types.MethodType(_linear_attention_forward, module)
        elif isinstance(module, Attend):
            module.forward = types.MethodType(_attend_forward, module)
    return twin
