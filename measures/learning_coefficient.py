"""The local learning coefficient (LLC) of Lau, Furman, Wang, Murfet and Wei (arXiv:2308.12108), estimated with SGLD.

lambda_hat(w*) = n beta (E_w[L_n(w)] - L_n(w*)), beta = 1/log n, the expectation over the posterior tempered by beta
and localized at w* by a Gaussian prior of strength gamma, p(w) ~ exp(-n beta L_n(w) - gamma/2 ||w - w*||^2). Chains
of SGLD started at w* sample it, Delta w = -epsilon/2 (n beta grad L_b(w) + gamma (w - w*)) + N(0, epsilon I) with b
the context's batches in an order drawn from the generator, and E_w[L_n(w)] is the mean of the batch losses L_b(w_t)
over the draws after burn-in (the paper's SGLD-based estimator). n is the number of sharpness points.

The SGLD step is devinterp's `SGLD` optimizer (Timaeus, the authors' group), on one flat leaf tensor holding the model's
trainable parameters (`FlatModel`), the model evaluated functionally in eval mode. devinterp's own driver,
`estimate_learning_coeff` (devinterp < 2; 2.x replaced it with an `llc()` for token-id language-model datasets only),
is not used because it cannot run the protocol: it puts the model in train mode (BatchNorm on batch statistics,
dropout on; its initial-loss pass also updates the running statistics of the model it is given), seeds the global
random number generator instead of drawing from the run's generator, needs a DataLoader with a fixed batch size (the
study's fixed batches are not one), pickles the whole data set for every call, and adds noise to frozen parameters.
"""

from __future__ import annotations

import math
import warnings

import torch
from devinterp.optim.sgld import SGLD
from torch import nn

from sharpbench import FlatModel, MeasureContext


def local_learning_coefficient(model: nn.Module, context: MeasureContext, *, epsilon: float = 3e-4,
                               gamma: float = 100.0, chains: int = 2, draws: int = 200, burnin: int = 100) -> float:
    """The SGLD estimate of the LLC at the model's weights: the mean over `chains` chains of
    n beta (mean of L_b(w_t) over `draws` draws after `burnin` steps - L_n(w*)), beta = 1/log n."""
    return llc_per_chain(model, context, epsilon=epsilon, gamma=gamma, chains=chains, draws=draws,
                         burnin=burnin).mean().item()


def llc_per_chain(model: nn.Module, context: MeasureContext, *, epsilon: float, gamma: float, chains: int,
                  draws: int, burnin: int) -> torch.Tensor:
    """Each chain's estimate n beta (mean draw loss - L_n(w*)), float64, one per chain: their spread across chains
    is the Monte Carlo error of the mean (standard error = std / sqrt(chains))."""
    _check(epsilon=epsilon, gamma=gamma, chains=chains, draws=draws, burnin=burnin)
    sizes = [len(labels) for _, labels in context.batches]
    n = sum(sizes)
    if n < 2:
        raise ValueError(f"the LLC's inverse temperature 1/log n needs n >= 2 sharpness points, got n = {n}")
    nbeta = n / math.log(n)
    flat = FlatModel.of(model)
    loss_at_w_star = _full_loss(flat, flat.w0, context)
    estimates = []
    for chain in range(chains):
        mean_loss = _chain_mean_loss(flat, context, sizes, nbeta=nbeta, epsilon=epsilon, gamma=gamma, draws=draws,
                                     burnin=burnin)
        if not math.isfinite(mean_loss):
            raise RuntimeError(f"SGLD chain {chain} diverged (loss {mean_loss}) at epsilon={epsilon}, gamma={gamma}: "
                               f"take a smaller epsilon or a larger gamma")
        estimates.append(nbeta * (mean_loss - loss_at_w_star))
    return torch.tensor(estimates, dtype=torch.float64)


def _check(*, epsilon: float, gamma: float, chains: int, draws: int, burnin: int) -> None:
    """ValueError naming the first parameter outside its range."""
    if not (math.isfinite(epsilon) and epsilon > 0):
        raise ValueError(f"epsilon (the SGLD step size) must be a finite number > 0, got {epsilon}")
    if not (math.isfinite(gamma) and gamma >= 0):
        raise ValueError(f"gamma (the localization strength) must be a finite number >= 0, got {gamma}")
    if chains < 1:
        raise ValueError(f"chains must be >= 1, got {chains}")
    if draws < 1:
        raise ValueError(f"draws must be >= 1, got {draws}")
    if burnin < 0:
        raise ValueError(f"burnin must be >= 0, got {burnin}")


def _full_loss(flat: FlatModel, w: torch.Tensor, context: MeasureContext) -> float:
    """L_n(w): the mean loss over all n sharpness points (each batch weighted by its size), in float64."""
    total, count = 0.0, 0
    with torch.no_grad():
        for inputs, labels in context.batches:
            total += context.loss_fn(flat.logits(w, inputs), labels).double().item() * len(labels)
            count += len(labels)
    return total / count


def _chain_mean_loss(flat: FlatModel, context: MeasureContext, sizes: list[int], *, nbeta: float, epsilon: float,
                     gamma: float, draws: int, burnin: int) -> float:
    """One SGLD chain from w*: the mean of the batch losses L_b(w_t) at the steps after burn-in, each weighted by its
    batch's size (over whole passes through the batches this is the mean of L_n(w_t))."""
    w = flat.w0.clone().requires_grad_(True)
    # devinterp marks SGLD deprecated in favour of its SGMCMC class, whose step takes no generator
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        sampler = SGLD([w], lr=epsilon, localization=gamma, nbeta=nbeta)
    generator = context.generator
    order: list[int] = []
    total = torch.zeros((), dtype=torch.float64, device=flat.w0.device)
    weight = 0
    for step in range(burnin + draws):
        if not order:   # a new pass through the batches, in an order drawn from the run's generator
            order = torch.randperm(len(sizes), generator=generator, device=generator.device).tolist()
        index = order.pop()
        inputs, labels = context.batches[index]
        with torch.enable_grad():
            loss = context.loss_fn(flat.logits(w, inputs), labels)
            w.grad, = torch.autograd.grad(loss, w)
        if step >= burnin:
            total += loss.detach().double() * sizes[index]
            weight += sizes[index]
        sampler.step(noise_generator=generator)
    return (total / weight).item()
