"""One-shot unlearning: procedures that edit the weights once instead of running a gradient loop.

- InfluenceStep (IU): one Newton-style step along an influence direction, the inverse Hessian of the
  remain loss approximated by WoodFisher (Jia et al. 2023 / SalUn code, `unlearn/Wfisher.py`).
- FisherNoise (FF): Fisher forgetting (Golatkar et al. 2020) as `unlearn/fisher.py:fisher_new` runs it.
- SynapseSelection + Dampening (SSD): Selective Synaptic Dampening (Foster et al. 2024), `src/ssd.py`.
- SingleGradient (one_step): single gradient unlearning of "Unrolling SGD" (Thudi et al. 2022).

Each is a Procedure (geometry.py) whose `run` edits `ctx.model` in place and counts its sample passes.
"""
from __future__ import annotations

import copy
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import Schedule
from ..data.images import DataView
from ..errors import ConfigError
from ..models import classifier_layer, trainable
from ..training import sgd_step_sizes
from .calibration import StrengthParams, snapshot
from .context import Context
from .fisher import diagonal_fisher
from .forgetting import fresh_copy
from .geometry import Procedure
from .params import Field, Params
from .parts import MaskPart
from .task import Classification


class OneShot(Procedure):
    """A procedure that edits the weights once; the engine's calibration then decides the edit's strength (the
    multiple of it to keep, `Calibrator.strength`), so that the method's own scale transfers across problems."""

    def run(self, ctx: Context, method, mask) -> None:
        before = snapshot(ctx.model)
        self.edit(ctx, method, mask)
        after = snapshot(ctx.model)
        ctx.total_steps = 1
        ctx.calibrator(1).strength(ctx, before, after)

    def edit(self, ctx: Context, method, mask) -> None:
        raise NotImplementedError

_CHUNK = 256  # batch size for gradient sums taken in eval mode, where it does not change the result
_EXACT_LIMIT = 2**28  # floats (1 GiB) the exact WoodFisher product may hold as per-sample gradients


def _flat(tensors) -> Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


def _summed_gradient(ctx: Context, view: DataView, batch_size: int, train: bool) -> Tensor:
    """The flat gradient of sum_i l(x_i) over `view` at ctx.model's weights, in train or eval mode."""
    params = list(trainable(ctx.model).values())
    total = torch.zeros(sum(p.numel() for p in params), device=ctx.device)
    for positions in torch.arange(len(view)).split(batch_size):
        batch = ctx.batch(view, positions)
        loss = ctx.task.losses(ctx.task.forward(ctx, batch, train=train), batch).sum()
        total += _flat(torch.autograd.grad(loss, params))
        ctx.sample_passes += len(batch)
    return total


def _per_sample_gradients(ctx: Context, view: DataView, positions: Tensor):
    """Flat gradients of l(x_i), one sample at a time, model in eval mode (the code's batch_size=1 loader)."""
    params = list(trainable(ctx.model).values())
    for position in positions:
        batch = ctx.batch(view, position.reshape(1))
        loss = ctx.task.losses(ctx.task.forward(ctx, batch, train=False), batch).sum()
        ctx.sample_passes += 1
        yield _flat(torch.autograd.grad(loss, params))


@torch.no_grad()
def _add_flat(model: nn.Module, delta: Tensor, mask: dict[str, Tensor] | None = None) -> None:
    """θ += delta (flat, in named_parameters order), multiplied by the mask where one is given."""
    start = 0
    for name, p in trainable(model).items():
        step = delta[start : start + p.numel()].view_as(p)
        p.add_(step * mask[name] if mask is not None and name in mask else step)
        start += p.numel()


# --- IU: influence unlearning with a WoodFisher inverse Hessian -------------------------------------------

def woodfisher_code(v: Tensor, gradients, n: int) -> Tensor:
    """The official `woodfisher` recursion, as written: the first gradient g_0 seeds a direction o, then for
    every further gradient g: k -= (k·g)/(n + o·g) o and o -= (o·g)/(n + o·g) o, with k starting at v.

    It is a Sherman-Morrison recursion in which o stays a multiple of g_0 (the code never forms F⁻¹g for the
    later g), so the result is v plus a multiple of g_0, not (I + GᵀG/n)⁻¹v.
    """
    k, o = v.clone(), None
    for g in gradients:
        if o is None:
            o = g.clone()
            continue
        t = torch.dot(o, g)
        k -= torch.dot(k, g) / (n + t) * o
        o -= t / (n + t) * o
    return k


def woodfisher_exact(v: Tensor, gradients) -> Tensor:
    """(I + (1/n) Σ g gᵀ)⁻¹ v over the n gradients: the WoodFisher recursion (Singh & Alistarh 2020) carried
    out exactly, in its closed Woodbury form v - Gᵀ(nI + GGᵀ)⁻¹Gv. Holds the n gradients in memory."""
    G = torch.stack(list(gradients))
    n = G.shape[0]
    gram = (G @ G.T).double() + n * torch.eye(n, dtype=torch.float64, device=G.device)
    coeff = torch.linalg.solve(gram, (G @ v).double()).to(v.dtype)
    return v - G.T @ coeff


class InfluenceStep(OneShot):
    """IU (Koh & Liang influence, WoodFisher Hessian; the SalUn/Unlearn-Sparse `Wfisher`):

        v = (1/N) Σ_{D_f} ∇l  -  n_f / (N n_r) Σ_{D_r} ∇l        (N = n_f + n_r, eval mode)
        θ ← θ + alpha · F̂⁻¹ v,   F̂ = I + (1/n) Σ_{i≤n} g_i g_iᵀ over n per-sample remain gradients g_i

    i.e. ascend the forget loss and descend the remain loss, preconditioned by the remain-set empirical
    Fisher (the Hessian's stand-in). `hessian_samples` is the code's N = 1000 (the number of remain gradients
    and the denominator); they are a random sample of D_r drawn with the run's generator (the code takes the
    first N of its unshuffled retain set, and N+2 of them by an off-by-two). woodfisher='code' runs the
    official recursion as written (see `woodfisher_code`: it corrects v only along the first sampled gradient);
    'exact' computes F̂⁻¹v exactly (memory n × #params). F̂'s identity term is the code's start k = v; with
    well-fit remain data F̂ ≈ I and the step is close to alpha·v.
    """

    name = "influence"
    label = "one Newton step θ + α·F̂_r⁻¹(∇L_f - ∇L_r) (WoodFisher)"

    class Params(StrengthParams):
        alpha: float = Field(0.2, gt=0, description="step size α of the Newton step")
        hessian_samples: int = Field(1000, ge=1, description="per-sample remain gradients in the WoodFisher estimate")
        woodfisher: Literal["code", "exact"] = Field("code", description="the official recursion as written, or the "
                                                                          "exact inverse-Fisher product")

    def edit(self, ctx: Context, method, mask) -> None:
        hp = ctx.hp
        n_f, n_r = len(ctx.forget), len(ctx.remain)
        chosen = torch.randperm(n_r, generator=ctx.generator)[: hp["hessian_samples"]]
        size = len(chosen) * sum(p.numel() for p in trainable(ctx.model).values())
        if hp["woodfisher"] == "exact" and size > _EXACT_LIMIT:
            raise ConfigError(f"woodfisher='exact' would hold {len(chosen)} gradients of the model "
                              f"({size * 4 / 2**30:.1f} GiB): lower hessian_samples or use woodfisher='code'")
        total = n_f + n_r
        v = (_summed_gradient(ctx, ctx.forget, _CHUNK, train=False) / total
             - _summed_gradient(ctx, ctx.remain, _CHUNK, train=False) * (n_f / (total * n_r)))
        gradients = _per_sample_gradients(ctx, ctx.remain, chosen)
        if hp["woodfisher"] == "code":
            direction = woodfisher_code(v, gradients, hp["hessian_samples"])
        else:
            direction = woodfisher_exact(v, gradients)
        _add_flat(ctx.model, hp["alpha"] * direction, mask)


# --- FF: Fisher forgetting --------------------------------------------------------------------------------

def expected_fisher(ctx: Context, view: DataView, batch_size: int, samples: int | None = None) -> dict[str, Tensor]:
    """The `hessian()` of `fisher_new`: per minibatch (eval mode), for every class y the squared gradient of
    the minibatch-mean loss with all labels set to y, weighted by the batch-mean predicted probability of y;
    averaged over minibatches. One forward and C backward passes per minibatch (counted as C passes). With
    `samples`, over a seeded random subset of that many (an expectation, estimated from fewer terms)."""
    params = trainable(ctx.model)
    fisher = {n: torch.zeros_like(p) for n, p in params.items()}
    batches = 0
    positions_all = torch.arange(len(view))
    if samples is not None and samples < len(view):
        positions_all = torch.randperm(len(view), generator=ctx.generator)[:samples].sort().values
    for positions in positions_all.split(batch_size):
        batch = ctx.batch(view, positions)
        logits = ctx.task.forward(ctx, batch, train=False)
        prob = F.softmax(logits, dim=-1).detach()
        for y in range(logits.shape[1]):
            target = torch.full_like(batch.y, y)
            grads = torch.autograd.grad(F.cross_entropy(logits, target), list(params.values()), retain_graph=True)
            weight = prob[:, y].mean()
            for (n, _), g in zip(params.items(), grads):
                fisher[n] += weight * g ** 2
        ctx.sample_passes += len(batch) * logits.shape[1]
        batches += 1
    return {n: f / max(batches, 1) for n, f in fisher.items()}


class FisherNoise(OneShot):
    """FF (Golatkar et al. 2020), as the SalUn/Unlearn-Sparse `fisher_new` runs it: θ ← θ + sqrt(var)·ε,

        var = alpha · min(1 / (F_r + 1e-8), 1e3)     (classifier layer: capped at 1e2 instead)
        weights with ndim > 1: var averaged over dim 1 (per output unit and kernel position)
        classifier layer and every 1-d parameter (BatchNorm, biases): var × 10

    F_r is `expected_fisher` on D_r. When whole classes are forgotten (present in D_f, absent from D_r; the
    code's 'all 4500 CIFAR-10 samples of the class'), their classifier rows are set to 0 with var 1e-4 before
    the ×10, so those outputs are silenced. The code finds 'the classifier' as every parameter whose first
    dimension equals the number of classes; this uses the model's final linear layer (`classifier_layer`).
    fisher_batch_size is the code's 32 (Golatkar's original uses 1, and alpha 1e-6).
    """

    name = "fisher-noise"
    label = "Gaussian noise, covariance α·F_r⁻¹ (+ silence forgotten classes)"

    class Params(StrengthParams):
        alpha: float = Field(1e-6, gt=0, description="scale α of the noise covariance α·F_r⁻¹")
        fisher_batch_size: int = Field(32, ge=1, description="minibatch of the Fisher pass (Golatkar: 1)")

    def edit(self, ctx: Context, method, mask) -> None:
        if mask is not None:
            raise ConfigError("Fisher forgetting takes no saliency mask: declare it without one")
        if not isinstance(ctx.task, Classification):
            raise ConfigError(f"Fisher forgetting needs a classification task, got '{ctx.task.name}'")
        alpha = ctx.hp["alpha"]
        # The pass costs C backward passes per sample: over all of D_r that is C / epochs of a retraining (2 on
        # MNIST's 5-epoch recipe), so it reads as much of D_r as `budget` of a retraining pays for.
        affordable = int(ctx.hp["budget"] * ctx.recipe.epochs * len(ctx.remain) / ctx.num_classes)
        fisher = expected_fisher(ctx, ctx.remain, ctx.hp["fisher_batch_size"], max(affordable, 1))
        head = {id(p) for p in classifier_layer(ctx.model).parameters()}
        forgotten = sorted(set(ctx.forget.labels.tolist()) - set(ctx.remain.labels.tolist()))
        with torch.no_grad():
            for name, p in trainable(ctx.model).items():
                in_head = id(p) in head
                var = (1.0 / (fisher[name] + 1e-8)).clamp(max=1e2 if in_head else 1e3) * alpha
                if p.ndim > 1:
                    var = var.mean(dim=1, keepdim=True).expand_as(p).clone()
                mean = p.detach().clone()
                if in_head and forgotten:
                    mean[forgotten] = 0.0
                    var[forgotten] = 1e-4
                if in_head or p.ndim == 1:
                    var *= 10
                noise = torch.randn(p.shape, generator=ctx.generator).to(p.device)
                p.copy_(mean + var.sqrt() * noise)


# --- SSD: selective synaptic dampening --------------------------------------------------------------------

class SynapseSelection(MaskPart):
    """SSD's selection: parameters with I_f > α·I_D, I = diagonal Fisher (mean over minibatches of the
    squared minibatch-mean gradient, eval mode, no augmentation) on D_f and on the whole training set D
    (D_r then D_f, as the code's ConcatDataset). fisher_batch_size is the code's 128 for both; 1 gives the
    per-sample Fisher diagonal of the paper, for which I_f / I_D <= N / n_f, so α must stay below N / n_f."""

    label = "Fisher ratio I_f / I_D > α (SSD)"

    class Params(Params):
        selection_weighting: float = Field(10.0, gt=0, description="α: select weights with I_f > α·I_D")
        fisher_batch_size: int = Field(128, ge=1, description="minibatch of the importance passes (1: per sample)")

    def compute(self, ctx: Context) -> dict[str, Tensor]:
        batch = ctx.hp["fisher_batch_size"]
        full = ctx.dataset.train(torch.cat([ctx.remain.indices, ctx.forget.indices]), augment=False)
        forget = diagonal_fisher(ctx, ctx.forget.eval(), batch)
        whole = diagonal_fisher(ctx, full, batch)
        ctx.state["ssd_importances"] = (forget, whole)
        return select_synapses(forget, whole, ctx.hp["selection_weighting"])


def select_synapses(forget: dict[str, Tensor], whole: dict[str, Tensor], alpha: float) -> dict[str, Tensor]:
    """1[I_f > α I_D] per parameter (strictly greater, as the code's torch.where(fimp > oimp_norm))."""
    return {n: (forget[n] > alpha * whole[n]).float() for n in forget}


def dampen(model: nn.Module, mask: dict[str, Tensor], forget: dict[str, Tensor], whole: dict[str, Tensor],
           dampening: float) -> None:
    """Selected parameters are multiplied by β = min(λ I_D / I_f, 1); the others stay as they are."""
    with torch.no_grad():
        for name, p in trainable(model).items():
            if name in mask:
                beta = (dampening * whole[name] / forget[name]).clamp(max=1.0)
                p.copy_(torch.where(mask[name].bool(), p * beta, p))


class Dampening(OneShot):
    """SSD's update (`ParameterPerturber.modify_weight`, exponent 1, lower bound 1): θ_i ← β_i θ_i on the
    selected parameters, β_i = min(λ I_D,i / I_f,i, 1), λ = dampening_constant."""

    name = "dampening"
    label = "dampen selected weights by min(λ·I_D/I_f, 1)"

    class Params(StrengthParams):
        dampening_constant: float = Field(1.0, gt=0, description="λ: selected weights are scaled by min(λ·I_D/I_f, 1)")

    def edit(self, ctx: Context, method, mask) -> None:
        if mask is None or "ssd_importances" not in ctx.state:
            raise ConfigError("SSD's dampening needs the SynapseSelection mask part")
        forget, whole = ctx.state["ssd_importances"]
        dampen(ctx.model, mask, forget, whole, ctx.hp["dampening_constant"])


# --- one_step: single gradient unlearning (Unrolling SGD) ------------------------------------------------

class SingleGradient(OneShot):
    """Single gradient unlearning (Thudi et al., "Unrolling SGD", EuroS&P 2022; code
    `Unlearning/correlation_verification.py`): unrolling SGD to first order, w_T ≈ w_0 - Σ_t η_t/b Σ_{x∈B_t}
    ∇l(w_0; x) + (higher-order terms), so the forget set's first-order contribution is removed by

        w ← w_T + (Σ_e η_e / b) · Σ_{x∈D_f} ∇l(w_0; x)

    with one term per epoch in which each forget sample was seen once (η m / b for a constant rate η over m
    epochs, the paper's form; the code adds (epochs seen)·lr·∇(batch-mean loss) for its one unlearned batch).
    The gradient is taken in train mode (as the code's M_pretrain.train()), over forget batches of the
    training batch size b, and BatchNorm statistics are left as they were.

    The trajectory is not stored, so: η_e, m, b come from the dataset's training recipe (or train_lr,
    train_epochs, train_batch_size, train_schedule); momentum and weight decay are left out, as the code
    leaves them out of its update although it trains with them. gradient_at='initial' (paper, code) takes
    the gradient at w_0 rebuilt by re-initialising the model's layers under `init_seed` (the training seed,
    by default the run's seed, which the bench and `unlearnkit forget` set to the original's training seed:
    exact for the built-in models, which `pipeline.train` initialises that way); 'final' takes it at the
    weights given (the only choice for a model whose initial weights cannot be rebuilt).
    """

    name = "single-gradient"
    label = "one ascent step w + (Σ_t η_t / b)·∇L_f(w_0) (unrolled SGD)"

    class Params(StrengthParams):
        gradient_at: Literal["initial", "final"] = Field(
            "initial", description="gradient at the rebuilt initial weights w_0 (paper) or at the trained ones")
        init_seed: int | None = Field(None, ge=0, description="seed that built w_0 (none: the run's seed)")
        train_lr: float | None = Field(None, gt=0, description="training learning rate (none: the original's recipe)")
        train_epochs: int | None = Field(None, ge=1, description="training epochs (none: the original's recipe)")
        train_batch_size: int | None = Field(None, ge=1, description="training batch (none: the original's recipe)")
        train_schedule: Schedule | None = Field(None, description="training LR schedule (none: the original's recipe)")

    def edit(self, ctx: Context, method, mask) -> None:
        hp = ctx.hp
        lr, epochs, batch_size, schedule = self.recipe(ctx)
        scale = sum(sgd_step_sizes(lr, epochs, schedule)) / batch_size
        trained = copy.deepcopy(ctx.model.state_dict())
        if hp["gradient_at"] == "initial":
            seed = ctx.seed if hp["init_seed"] is None else hp["init_seed"]
            # A frozen parameter is not trained, so its w_0 is the value it holds (a pretrained layer's, say).
            frozen = {n for n, _ in ctx.model.named_parameters()} - set(trainable(ctx.model))
            initial = fresh_copy(ctx.model, seed).state_dict()
            ctx.model.load_state_dict({k: trained[k] if k in frozen else v for k, v in initial.items()})
        gradient = _summed_gradient(ctx, ctx.forget, batch_size, train=True)
        ctx.model.load_state_dict(trained)  # back to w_T, BatchNorm statistics included
        _add_flat(ctx.model, scale * gradient, mask)

    @staticmethod
    def recipe(ctx: Context) -> tuple[float, int, int, str]:
        """(lr, epochs, batch size, schedule) of the original training: overrides over the original's recipe."""
        hp, recipe = ctx.hp, ctx.recipe
        if recipe.optimizer != "sgd" and hp["train_lr"] is None:
            raise ConfigError(f"one_step unrolls SGD, but the original was trained with {recipe.optimizer}: pass "
                              "train_lr (and the other train_* values) to use it anyway")
        given = {"lr": hp["train_lr"], "epochs": hp["train_epochs"], "batch_size": hp["train_batch_size"],
                 "schedule": hp["train_schedule"]}
        values = {k: getattr(recipe, k) if v is None else v for k, v in given.items()}
        return float(values["lr"]), int(values["epochs"]), int(values["batch_size"]), str(values["schedule"])
