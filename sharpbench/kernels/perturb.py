"""Perturbation sets of the study, their projections, steps and noise.

The set is {delta : ||delta / c||_p <= rho} with c = |w| (adaptive) or c = 1 (standard), p in {2, inf}.
Everything here works in the coordinates u = delta / c, where the set is the plain ball (or box) of radius
rho: the ascent is APGD on u, so adaptive sharpness is computed by a reparametrization-invariant algorithm.
Coordinates with c_i = 0 cannot move (the 0/0 of the definition is read as 'fixed at zero').
Every function works on the last dimension, so a leading dimension of independent problems (m-sharpness
batches, models) is handled by the same fused operations.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

NORMS = ("linf", "l2")


def check_norm(norm: str) -> None:
    """Reject a norm other than the study's two."""
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")


@dataclass(frozen=True)
class PerturbationSet:
    """{delta : ||delta / c||_p <= rho} for a scale vector c of shape (P,), with what its projection and
    steps need computed once (so that each ascent iteration is a handful of fused operations)."""

    c: torch.Tensor
    rho: float
    norm: str
    movable: torch.Tensor       # c > 0
    fixed: torch.Tensor         # c == 0
    inverse: torch.Tensor       # 1 / c where c > 0, else 0
    bound: torch.Tensor         # rho * c, the half-width of the box
    lower: torch.Tensor         # -rho * c
    reference: bool = False     # the released code's L2 step and adaptive L2 projection (see `step`, `project`)

    @classmethod
    def of(cls, c: torch.Tensor, rho: float, norm: str, reference: bool = False) -> "PerturbationSet":
        check_norm(norm)
        movable = c > 0
        inverse = torch.where(movable, 1 / torch.where(movable, c, torch.ones_like(c)), torch.zeros_like(c))
        bound = rho * c
        return cls(c=c, rho=rho, norm=norm, movable=movable, fixed=~movable, inverse=inverse, bound=bound,
                   lower=-bound, reference=reference)

    def weighted_norm(self, delta: torch.Tensor) -> torch.Tensor:
        """||delta / c||_p over the last dimension, with 0/0 taken as 0 (and x/0 for x != 0 as +inf)."""
        stuck = torch.where(delta == 0, 0.0, float("inf")).to(delta.dtype)
        ratio = torch.where(self.movable, delta * self.inverse, stuck)
        return ratio.abs().amax(dim=-1) if self.norm == "linf" else ratio.norm(dim=-1)

    def project(self, z: torch.Tensor, in_place: bool = False) -> torch.Tensor:
        """Projection onto the set, taken in the coordinates u = delta / c; `in_place` overwrites z.

        L-inf: the clamp to [-rho c, rho c] (the Euclidean projection too), as a maximum then a minimum: with
        tensor bounds, torch.clamp took 87 ms into a reused buffer on timm's resnet18, either of them 7-9 ms
        (tests/benchmarks/README.md). L2: rescaling onto the ellipsoid along the ray, the Euclidean projection
        in u. Coordinates with c = 0 are set to 0.
        """
        z = z if in_place else z.clone()
        if self.norm == "linf":
            return torch.minimum(torch.maximum(z, self.lower, out=z), self.bound, out=z)
        if self.reference and not bool((self.c == 1).all()):
            return self._released_ellipsoid(z)
        radius = (z * self.inverse).norm(dim=-1, keepdim=True)
        # a tensor over a tensor: `rho / radius` with rho a Python float is computed as rho * (1 / radius), which
        # scaled a point on the boundary by 1 - 1e-16 (float64), so projecting it moved it
        factor = torch.clamp(radius.new_tensor(self.rho) / radius.clamp_min(torch.finfo(z.dtype).tiny), max=1.0)
        return z.mul_(factor).masked_fill_(self.fixed, 0.0)

    def step(self, delta: torch.Tensor, grad: torch.Tensor, step_scale: torch.Tensor,
             out: torch.Tensor | None = None) -> torch.Tensor:
        """APGD's steepest-ascent step on u = delta / c, mapped back to delta; step_scale = eta * c. Written
        into `out` when it is given (a buffer the caller reuses: on a CPU, each fresh parameter-sized tensor
        costs its page faults: for timm's resnet18, `a + b` took 68 ms into a fresh tensor and 14 ms with `out=`).

        The gradient in u is c * g. L-inf: delta += eta * c * sign(c g) = eta * c * sign(g), the study's step.
        L2: delta += eta * c * (c g) / ||c g||_2; for c = 1 this is the study's eta * g / ||g||_2. (The study's
        adaptive L2 step, eta * c * g / ||g||_2, does not match its set's geometry: on a linear loss it stops
        short of the maximizer, and its iterates change under a rescaling that leaves adaptive sharpness
        unchanged.)
        """
        if self.norm == "linf":
            signs = torch.sign(grad, out=out)
            return torch.addcmul(delta, signs, step_scale, out=signs)
        if self.reference:      # the released code's step: eta * c * g / ||g||_2
            scaled = torch.div(grad, grad.norm(dim=-1, keepdim=True) + 1e-12, out=out)
            return torch.addcmul(delta, step_scale, scaled, out=scaled)
        scaled = torch.mul(self.c, grad, out=out)
        scaled.div_(scaled.norm(dim=-1, keepdim=True) + 1e-12)
        return torch.addcmul(delta, step_scale, scaled, out=scaled)

    def _released_ellipsoid(self, z: torch.Tensor) -> torch.Tensor:
        """The released code's adaptive L2 projection, row by row, in place: the Euclidean projection in delta
        space, delta_i / (1 + 2 lambda / c_i^2), with lambda found by its bisection (from 0.1 in [0, 10], the
        upper end doubling when approached, until the weighted norm is within 1e-5 of rho). Its defect is kept:
        with a parameter at exactly 0 its weighted norm is 0/0 = NaN, no comparison holds, and nothing is
        projected. Written by hand: it is the released algorithm, iteration for iteration, that is wanted."""
        if bool(self.fixed.any()):
            return z
        inverse_squared = self.inverse.square()
        rows = z.view(-1, z.shape[-1])
        weights = inverse_squared.view(-1, z.shape[-1]).expand_as(rows)
        for row, weight in zip(rows, weights):
            new_norm = (row * weight.sqrt()).norm()
            if not new_norm > self.rho:
                continue
            low, lmbd, high, limit = 0.0, 0.1, 10.0, 10.0
            while abs(float(new_norm) - self.rho) > 1e-5:
                shrunk = row / (1 + 2 * lmbd * weight)
                new_norm = (shrunk * weight.sqrt()).norm()
                if new_norm > self.rho:
                    lmbd, low = (lmbd + high) / 2, lmbd
                else:
                    lmbd, high = (low + lmbd) / 2, lmbd
                if limit - high < 1e-2:
                    limit, high = limit * 2, high * 2
            row.copy_(shrunk)
        return z

    def target(self, delta: torch.Tensor, grad: torch.Tensor, step_scale: torch.Tensor,
               out: torch.Tensor | None = None) -> torch.Tensor:
        """The projected step, project(step(delta, grad, step_scale)), in one fresh tensor or in `out`."""
        return self.project(self.step(delta, grad, step_scale, out), in_place=True)


def sample_noise(c: torch.Tensor, norm: str, generator: torch.Generator, samples: int,
                 out: torch.Tensor | None = None) -> torch.Tensor:
    """`samples` rows of xi ~ N(0, I) ("l2") or U[-1, 1] ("linf"), each of the shape of c (the perturbation
    is then rho * c * xi). Each row is one draw of c.numel() numbers, in order, so the values do not depend
    on how rows are grouped later. With `out`, a (samples, P) buffer on c's device with P >= c.numel(), each
    row is drawn into its first c.numel() columns (the rest is left as it is) and `out` is returned: on a CPU
    a fresh parameter-sized tensor costs its page faults (see `step`)."""
    draw = torch.randn if norm == "l2" else torch.rand
    size = c.numel()
    if out is None:
        out = torch.empty(samples, size, dtype=c.dtype, device=c.device)
    rows = out[:, :size]
    for row in rows:
        if row.device == generator.device:
            draw(size, generator=generator, out=row)
        else:
            row.copy_(draw(size, generator=generator, device=generator.device, dtype=c.dtype))
    if norm == "linf":
        rows.mul_(2).sub_(1)
    return out if out.shape[-1] != size else out.view(samples, *c.shape)


def sample_start(size: int, rho: float, norm: str, generator: torch.Generator, count: int) -> torch.Tensor:
    """`count` random points u of the unit-scale set {||u||_p <= rho} in R^size, for random restarts (the
    start is then delta = c * u): uniform in the box (L-inf), uniform in the ball (L2: a Gaussian direction
    at radius rho * U^(1/size))."""
    check_norm(norm)
    rows = []
    for _ in range(count):
        if norm == "linf":
            rows.append(rho * (2 * torch.rand(size, generator=generator, device=generator.device) - 1))
        else:
            direction = torch.randn(size, generator=generator, device=generator.device)
            radius = rho * torch.rand((), generator=generator, device=generator.device) ** (1 / size)
            rows.append(direction * (radius / direction.norm()))
    return torch.stack(rows) if rows else torch.empty(0, size, device=generator.device)
