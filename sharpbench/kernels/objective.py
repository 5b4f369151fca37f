"""The loss of a model at flat parameters on one batch: what the sharpness kernels differentiate.

Called as objective(w, inputs, labels) it is a function of the flat vector (vmap-able). For a lone problem on a
CPU it also gives its gradient written into a reused buffer: autograd's gradient of the flat vector is the
concatenation of the parameters' gradients in a fresh parameter-sized tensor, whose page faults cost ResNet-18
30 ms per iteration on the shared 2-core CPU (tests/benchmarks/README.md); with each parameter a leaf of its own,
the same gradients are concatenated into the buffer instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from sharpbench.kernels.flat import FlatModel
from sharpbench.losses import LossFn, with_normalized_logits


@dataclass(frozen=True, eq=False)
class FlatObjective:
    """The loss at flat parameters w on one batch, with the study's logit normalization when asked, under bf16
    autocast when asked (the loss itself in float32)."""

    flat: FlatModel
    loss_fn: LossFn
    normalize_logits: bool = False
    bf16: bool = False

    def __call__(self, w: torch.Tensor, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self._loss(lambda: self.flat.logits(w, inputs), labels)

    def value_and_grad_into(self, w: torch.Tensor, inputs: torch.Tensor, labels: torch.Tensor,
                            out: torch.Tensor) -> torch.Tensor:
        """The loss at the flat row w, returned, and its gradient with respect to w, written into `out` (a
        tensor of w's shape; zero over a stack's carried buffers, which never move)."""
        tensors = {name: piece.detach() for name, piece in self.flat.unflatten(w.detach()).items()}
        trainable = self.flat.names[:len(self.flat.names) - len(self.flat.carried)]
        leaves = [tensors[name].requires_grad_(True) for name in trainable]
        with torch.enable_grad():
            loss = self._loss(lambda: self.flat.call(tensors, inputs), labels)
            grads = torch.autograd.grad(loss, leaves, allow_unused=True)
        pieces = [torch.zeros_like(leaf).reshape(-1) if grad is None else grad.reshape(-1)
                  for leaf, grad in zip(leaves, grads)]
        torch.cat(pieces, out=out[:self.flat.trainable])
        out[self.flat.trainable:].zero_()
        return loss.detach()

    def _loss(self, logits: Callable[[], torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        loss = with_normalized_logits(self.loss_fn) if self.normalize_logits else self.loss_fn
        if not self.bf16:
            return loss(logits(), labels)
        with torch.autocast(device_type=self.flat.w0.device.type, dtype=torch.bfloat16):
            values = logits()
        return loss(values.float(), labels)
