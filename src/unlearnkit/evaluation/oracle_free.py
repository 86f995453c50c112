"""Signals a user has without an oracle: how the forget set compares with data the model never saw.

Used by the engine's calibration (when to stop forgetting) and by the verdict printed after every `forget`.
"""
from __future__ import annotations

import functools
import math

import numpy as np
import torch


def logit_confidence(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """LiRA's logit-scaled confidence φ = log(p_y / (1 − p_y)) = z_y − logsumexp_{k≠y} z_k, in float64.

    A monotone function of the loss (l = log(1 + e^−φ)), so it ranks samples as the loss does, but it keeps
    that ranking where the loss rounds to 0: a confident model's float32 losses tie at 0 for most samples."""
    z = torch.as_tensor(logits, dtype=torch.float64)
    labels = torch.as_tensor(labels).reshape(-1, 1).long().to(z.device)
    true = z.gather(1, labels).squeeze(1)
    others = z.scatter(1, labels, float("-inf"))
    return true - torch.logsumexp(others, dim=1)


def membership_auc(forget_scores, heldout_scores) -> float:
    """The AUC of a threshold membership attack telling D_f (members, positives) from held-out data
    (negatives), a higher score (the logit-scaled confidence φ of the true class) meaning member:

        AUC = P(φ_f > φ_h) + P(φ_f = φ_h) / 2   over pairs (f in D_f, h in held-out)

    0.5 when the forget set looks like unseen data (what the oracle scores); 1 when every forget sample fits
    better than every held-out one; below 0.5 when forgetting overshot (the forget set now looks *less* like
    training data than unseen data does, itself a tell). NaN when either set is empty.
    """
    from sklearn.metrics import roc_auc_score

    f = np.asarray(torch.as_tensor(forget_scores, dtype=torch.float64).cpu()).reshape(-1)
    h = np.asarray(torch.as_tensor(heldout_scores, dtype=torch.float64).cpu()).reshape(-1)
    if not len(f) or not len(h):
        return math.nan
    labels = np.concatenate([np.ones(len(f)), np.zeros(len(h))])
    return float(roc_auc_score(labels, np.concatenate([f, h])))


def auc_tolerance(n_forget: int, n_heldout: int, z: float = 1.0) -> float:
    """z standard errors of the AUC of two same-distribution samples of these sizes (Hanley & McNeil 1982 at
    AUC = 0.5): SE = sqrt((n_f + n_h + 1) / (12 n_f n_h))."""
    if n_forget < 1 or n_heldout < 1:
        return math.nan
    return z * math.sqrt((n_forget + n_heldout + 1) / (12 * n_forget * n_heldout))


def loss_tolerance(forget_losses, heldout_losses, z: float = 1.0) -> float:
    """z standard errors of the difference of two mean losses (Welch): sqrt(var_f / n_f + var_h / n_h). A held-out
    set's few misclassified samples carry most of its mean loss, so this band is wide where they are few. A forget
    set of one sample has no spread of its own: the held-out set's stands in for it, the spread it would have were
    it unseen data (the hypothesis the band tests)."""
    f = torch.as_tensor(forget_losses, dtype=torch.float64).reshape(-1)
    h = torch.as_tensor(heldout_losses, dtype=torch.float64).reshape(-1)
    if not len(f) or len(h) < 2:
        return math.nan
    forget_var = f.var().item() if len(f) > 1 else h.var().item()
    return z * math.sqrt(forget_var / len(f) + h.var().item() / len(h))


REFERENCE_DRAWS = 2000
REFERENCE_POOL = 4096  # held-out samples the subsets are drawn from, at most (2,000 x 4,096: 0.4 s)


def heldout_reference(heldout_losses, n_forget: int, seed: int = 0) -> float:
    """The mean loss a set of `n_forget` unseen samples typically has: the median, over random subsets of that
    size drawn from the held-out losses (without replacement, seeded; from a seeded sample of `REFERENCE_POOL` of
    them where there are more), of their mean; the held-out mean itself where the forget set is as large as the
    held-out set, or as that sample.

    For a large forget set this is the held-out mean (a mean of many samples is nearly normal, so its median is
    its mean). For a small one it is far below it: a held-out set's mean loss is carried by its few misclassified
    samples, which a handful of unseen samples seldom includes (digits: the held-out mean 0.014, the median of
    the mean of 5 held-out samples 0.003, of one 0.0005). Asking a handful of forget samples to reach the held-out
    mean asks them to be misclassified, which a model retrained without them seldom does."""
    h = torch.as_tensor(heldout_losses, dtype=torch.float64).reshape(-1).cpu()
    if not len(h) or n_forget < 1:
        return math.nan
    pool, subsets = _reference_subsets(len(h), n_forget, seed)
    if subsets is None:
        return h.mean().item()
    return h[pool][subsets].mean(dim=1).median().item()


@functools.lru_cache(maxsize=8)
def _reference_subsets(n_heldout: int, n_forget: int, seed: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The held-out positions the subsets are drawn from, and the subsets (positions in those; None where the
    forget set is as large as them). They depend only on the sizes and the seed, so a calibration's every check
    draws them once (an argsort of 2,000 rows of up to 4,096)."""
    generator = torch.Generator().manual_seed(seed)
    pool = (torch.arange(n_heldout) if n_heldout <= REFERENCE_POOL else
            torch.randperm(n_heldout, generator=generator)[:REFERENCE_POOL])
    if n_forget >= len(pool):
        return pool, None
    return pool, torch.rand(REFERENCE_DRAWS, len(pool), generator=generator).argsort(dim=1)[:, :n_forget]


def reference_in_words(reference: float, heldout_mean: float, n_forget: int, digits: int = 4) -> str:
    """The loss target in words, as the verdict and the calibration's decisions give it: the held-out mean, or,
    for a small forget set, what as many held-out samples typically average (`heldout_reference`) beside it."""
    if reference == heldout_mean:
        return f"held-out {heldout_mean:.{digits}f}"
    what = ("one held-out sample's typical loss" if n_forget == 1 else
            f"what {n_forget} held-out samples typically average")
    return f"{reference:.{digits}f}, {what} (their mean: {heldout_mean:.{digits}f})"


def loss_reached(forget_loss: float, heldout_loss: float, band: float) -> bool:
    """Whether the mean forget loss is at least the held-out reference (`heldout_reference`: the held-out mean,
    for all but small forget sets), within `band` (a `loss_tolerance`): by the loss, D_f looks like data the model
    never saw. The verdict's loss signal and the calibration's loss rule."""
    return forget_loss >= heldout_loss - band

# --- The verdict printed after every `forget` --------------------------------------------------------------

DAMAGE_POINTS = 5.0  # accuracy lost on the data that stays beyond this is a damaged model
CLASS_TARGET = 1.0   # % forget accuracy at which a forgotten class counts as gone (an unseen class scores ~0)
REMAIN_SAMPLE = 5000


def fixed_sample(view, cap: int, seed: int):
    """At most `cap` samples of `view`, seeded so that every call picks the same ones (test-time transforms)."""
    view = view.eval()
    if len(view) <= cap:
        return view
    chosen = torch.randperm(len(view), generator=torch.Generator().manual_seed(seed))[:cap].sort().values
    return view.__class__(view.dataset, view.part, view.indices[chosen], False)


@torch.no_grad()
def _outputs(model, view, runtime) -> dict[str, torch.Tensor]:
    """Per-sample cross-entropy, true-class confidence, logit-scaled confidence and correctness, eval mode."""
    from ..training import predict

    logits, labels = predict(model, view, runtime)
    log_p = torch.log_softmax(logits.double(), dim=1)
    true = log_p.gather(1, labels.view(-1, 1)).squeeze(1)
    return {"loss": -true, "confidence": true.exp(), "phi": logit_confidence(logits, labels),
            "correct": logits.argmax(1) == labels}


def signals(model, split, dataset, runtime, seed: int = 0) -> dict:
    """What a user can measure without an oracle: the forget set against the held-out (test) set, and the
    accuracy on what stays (D_r, sampled; the test split, of the retained classes for class-wise forgetting)."""
    forget, heldout = dataset.train(split.forget).eval(), dataset.test()
    if split.kind == "class":
        keep = ~torch.isin(heldout.labels.cpu(), torch.as_tensor(list(split.forgotten_classes)))
        heldout = heldout.__class__(heldout.dataset, heldout.part, heldout.indices[keep], False)
    f, h = _outputs(model, forget, runtime), _outputs(model, heldout, runtime)
    r = _outputs(model, fixed_sample(dataset.train(split.remain), REMAIN_SAMPLE, seed), runtime)
    mean = {name: {k: v.double().mean().item() for k, v in o.items()} for name, o in (("f", f), ("h", h), ("r", r))}
    return {"forget_loss": mean["f"]["loss"], "heldout_loss": mean["h"]["loss"],
            "loss_gap": mean["h"]["loss"] - mean["f"]["loss"], "loss_band": loss_tolerance(f["loss"], h["loss"]),
            "heldout_reference": heldout_reference(h["loss"], len(forget), seed),
            "forget_confidence": mean["f"]["confidence"], "heldout_confidence": mean["h"]["confidence"],
            "confidence_gap": mean["f"]["confidence"] - mean["h"]["confidence"],
            "membership_auc": membership_auc(f["phi"], h["phi"]),
            "forget_acc": 100 * mean["f"]["correct"], "heldout_acc": 100 * mean["h"]["correct"],
            "remain_acc": 100 * mean["r"]["correct"], "sizes": {"forget": len(forget), "heldout": len(heldout)}}


def verdict(original, unlearned, split, dataset, runtime, seed: int = 0, unrolling: dict | None = None) -> dict:
    """The oracle-free verdict of one unlearning run: the signals before and after, their changes, Thudi et al.'s
    unlearning-error proxy where it applies (`unrolling`, from `evaluation.unrolling.unlearning_error_proxy`),
    and one line: forgotten / not yet / model damaged.

    - model damaged: the remain accuracy or the held-out accuracy (retained classes) fell by more than 5 points;
    - class-wise: forgotten when the forget accuracy is at most 1% (a class the model never saw is not predicted);
    - random: forgotten when the forget set looks like data the model never saw by both signals, each within one
      standard error: the membership AUC (logit-scaled confidence, forget vs held-out) is at most 0.5, and the
      mean forget loss is at least what as many held-out samples typically average (`heldout_reference`: the
      held-out mean, for all but small forget sets). Otherwise not yet. The AUC alone is not enough: a model
      confident on nearly all data ranks D_f and held-out data alike (AUC within noise of 0.5) while D_f's
      mean loss is still a seventieth of the held-out mean (MNIST 8k, doing nothing).
    """
    before, after = signals(original, split, dataset, runtime, seed), signals(unlearned, split, dataset, runtime, seed)
    tolerance = auc_tolerance(after["sizes"]["forget"], after["sizes"]["heldout"])
    change = {k: after[k] - before[k] for k in ("remain_acc", "heldout_acc", "forget_acc", "membership_auc")}
    if change["remain_acc"] < -DAMAGE_POINTS or change["heldout_acc"] < -DAMAGE_POINTS:
        word = "model damaged"
        reason = (f"accuracy on what stays fell: remain {change['remain_acc']:+.1f} points, held-out "
                  f"{change['heldout_acc']:+.1f} points")
    elif split.kind == "class":
        gone = after["forget_acc"] <= CLASS_TARGET
        word = "forgotten" if gone else "not yet"
        reason = f"forget accuracy {after['forget_acc']:.1f}% ({'<=' if gone else '>'} {CLASS_TARGET}%)"
    else:
        ranked = after["membership_auc"] <= 0.5 + tolerance
        band, reference = after["loss_band"], after["heldout_reference"]
        loss_met = loss_reached(after["forget_loss"], reference, band)
        target = reference_in_words(reference, after["heldout_loss"], after["sizes"]["forget"])
        word = "forgotten" if ranked and loss_met else "not yet"
        reason = (f"membership AUC, forget vs held-out: {before['membership_auc']:.3f} -> "
                  f"{after['membership_auc']:.3f} ({'within' if ranked else 'above'} 0.5 + {tolerance:.3f}); mean "
                  f"loss, forget vs held-out: {before['forget_loss']:.4f} -> {after['forget_loss']:.4f} vs {target}, "
                  f"{'within' if loss_met else 'below it by more than'} {band:.4f}")
    return {"verdict": word, "reason": reason, "line": f"{word}: {reason}", "before": before, "after": after,
            "change": change, "auc_tolerance": tolerance, "unrolling": unrolling}


def tail_share(forget_scores, heldout_scores, quantile: float = 0.1) -> float:
    """The share of D_f whose logit-scaled confidence φ falls below the held-out set's `quantile`-quantile:

        tail = mean over f in D_f of 1[φ_f < Q_q(φ_h)]

    `quantile` for data the model never saw (the held-out set itself, and an exchangeable forget set); below it
    when the forget set's hard examples were memorised (fit far better than unseen hard examples are). The low
    tail is where memorisation shows (Carlini et al.'s case for low false-positive rates), and it is robust to a
    held-out set whose bulk is easier or harder than the training data (MNIST's test split is cleaner)."""
    f = torch.as_tensor(forget_scores, dtype=torch.float64).reshape(-1)
    h = torch.as_tensor(heldout_scores, dtype=torch.float64).reshape(-1)
    if not len(f) or not len(h):
        return math.nan
    return (f < torch.quantile(h, quantile)).double().mean().item()
