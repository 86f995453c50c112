"""Per-example audit statistics over pools of models: U-LiRA, the NeurIPS 2023 challenge's epsilon, KLOM.

Every function here is pure: it takes model outputs already collected over a pool of K models on N examples
(logits (K, N, C), a statistic (K, N), boolean masks (K, N)) and returns numbers; nothing trains or loads.
Each docstring holds the exact definition, the paper, the official code it follows, and where it departs.

Sources, read for their definitions (none of their code is copied):
- LiRA: Carlini et al., "Membership inference attacks from first principles" (S&P 2022);
  tensorflow/privacy `research/mi_lira_2021/score.py` (the statistic) and `plot.py` (the Gaussian fits).
- U-LiRA: Hayes et al., "Inexact unlearning needs more careful evaluations to avoid a false sense of
  privacy" (SaTML 2025); LiouTang/Unlearn-Apollo-Attack `attacks/ULiRA.py` (an implementation).
- Challenge epsilon: Triantafillou et al., "Are we making progress in unlearning?" (2024);
  google-deepmind/unlearning_evaluation `metric.py`.
- KLOM: Georgiev et al., "Attribute-to-Delete: machine unlearning via datamodel matching" (ICLR 2025);
  RoyRin/data-unlearning-bench `unlearning_bench/eval.py`.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import NamedTuple, Union

import numpy as np
import torch
from scipy import stats

from ..errors import ConfigError

ArrayLike = Union[np.ndarray, torch.Tensor]

LIRA_STD_GUARD = 1e-30  # plot.py adds it to every standard deviation before the Gaussian log-density


def _numpy(x: ArrayLike, name: str, ndim: int | None = None, dtype=np.float64, finite: bool = True) -> np.ndarray:
    a = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if ndim is not None and a.ndim != ndim:
        raise ConfigError(f"{name} must have {ndim} dimensions, got shape {a.shape}")
    if dtype is bool:
        if a.dtype != np.bool_:
            raise ConfigError(f"{name} must be a boolean mask, got dtype {a.dtype}")
        return a
    a = a.astype(dtype)
    if finite and not np.isfinite(a).all():
        raise ConfigError(f"{name} contains NaN or infinite values")
    return a


def _choice(value: str, name: str, options: tuple[str, ...]) -> None:
    if value not in options:
        raise ConfigError(f"unknown {name} '{value}'; expected one of: {', '.join(options)}")


# ------------------------------------------------------------------------------------------ per-model statistics

def _logits_and_labels(logits: ArrayLike, labels: ArrayLike) -> tuple[torch.Tensor, torch.Tensor]:
    z = torch.as_tensor(logits).detach().cpu().to(torch.float64)
    if z.dim() < 1 or z.shape[-1] < 2:
        raise ConfigError(f"logits need a last axis of at least 2 classes, got shape {tuple(z.shape)}")
    y = torch.as_tensor(labels).detach().cpu().long()
    try:
        y = torch.broadcast_to(y, z.shape[:-1])
    except RuntimeError:
        raise ConfigError(f"labels of shape {tuple(y.shape)} do not broadcast to the logits' leading "
                          f"shape {tuple(z.shape[:-1])}") from None
    if y.numel() and (y.min() < 0 or y.max() >= z.shape[-1]):
        raise ConfigError(f"labels must lie in [0, {z.shape[-1] - 1}], got [{int(y.min())}, {int(y.max())}]")
    return z, y


def logit_confidence(logits: ArrayLike, labels: ArrayLike, *, guard: float = 0.0) -> np.ndarray:
    """LiRA's logit-scaled confidence, one value per row of `logits` (shape logits.shape[:-1]):

        phi = log(p_y / (1 - p_y)) = log p_y - log sum_{k != y} p_k = z_y - logsumexp_{k != y} z_k

    with p = softmax(z) over the last axis and y the label (broadcast against the leading axes, so logits
    (K, N, C) with labels (N,) give (K, N)). `guard=0` (default) evaluates the right-hand side in float64,
    which never underflows. `guard > 0` reproduces the official steps (tensorflow/privacy
    `mi_lira_2021/score.py`; the challenge's `metric.py:compute_logit_scaled_confidence` uses guard 1e-45):
    exp of the max-shifted logits in their own dtype (float32 from a network), a float64 softmax, then
    log(p_y + guard) - log(sum_{k != y} p_k + guard). The two agree to the logits' precision until
    sum_{k != y} p_k underflows, where the official value saturates near +-103.6 (log 1e-45). Use
    `guard=1e-45` to reproduce the challenge's scores.
    """
    if guard < 0:
        raise ConfigError(f"guard must be >= 0, got {guard}")
    z, y = _logits_and_labels(logits, labels)
    true = torch.nn.functional.one_hot(y, z.shape[-1]).bool()
    if guard == 0:
        return (z.gather(-1, y.unsqueeze(-1)).squeeze(-1) - z.masked_fill(true, -torch.inf).logsumexp(-1)).numpy()
    # The official steps in numpy: shift and exp in the logits' own dtype (float32 from a network), then float64.
    raw = logits.detach().cpu().numpy() if isinstance(logits, torch.Tensor) else np.asarray(logits)
    raw = raw if np.issubdtype(raw.dtype, np.floating) else raw.astype(np.float64)
    p = np.exp(raw - raw.max(-1, keepdims=True)).astype(np.float64)
    p /= p.sum(-1, keepdims=True)
    index = y.numpy()[..., None]
    p_true = np.take_along_axis(p, index, -1)[..., 0]
    np.put_along_axis(p, index, 0.0, -1)
    return np.log(p_true + guard) - np.log(p.sum(-1) + guard)


MARGIN_OTHERS = ("logsumexp", "max")


def margins(logits: ArrayLike, labels: ArrayLike, *, other: str = "logsumexp") -> np.ndarray:
    """KLOM's correct-class margin, one value per row of `logits` (shape logits.shape[:-1]):

        margin = z_y - logsumexp_{k != y} z_k          (other="logsumexp", default)
        margin = z_y - max_{k != y} z_k                (other="max")

    The default is the KLOM code's definition (data-unlearning-bench `eval.py:get_margin` and
    `get_margins_from_multimodel_logits`: the true logit minus the log-sum-exp of the others), which is
    the same number as `logit_confidence`. "max" is the Carlini-Wagner margin (largest other logit), offered
    because it is often what "margin" means; KLOM never uses it. Computed in float64 (the code works in the
    model's dtype, float16 under autocast).
    """
    _choice(other, "margin", MARGIN_OTHERS)
    z, y = _logits_and_labels(logits, labels)
    true = torch.nn.functional.one_hot(y, z.shape[-1]).bool()
    rest = z.masked_fill(true, -torch.inf)
    others = rest.logsumexp(-1) if other == "logsumexp" else rest.amax(-1)
    return (z.gather(-1, y.unsqueeze(-1)).squeeze(-1) - others).numpy()


# ------------------------------------------------------------------------------------------------------- ROC

class Roc(NamedTuple):
    fpr: np.ndarray
    tpr: np.ndarray
    thresholds: np.ndarray
    auc: float


def roc(scores: ArrayLike, is_member: ArrayLike, *, drop_intermediate: bool = True) -> Roc:
    """ROC of the rule "member if score >= t", over every threshold t (higher score = more member).

    fpr, tpr, thresholds are scikit-learn's `roc_curve(is_member, scores)` (with its default
    drop_intermediate=True, as LiRA's `plot.py:sweep`; the first point is (0, 0) at t = inf); auc is
    `roc_auc_score`, the trapezoidal area, in which tied scores count one half.
    """
    from sklearn.metrics import roc_auc_score, roc_curve

    s = _numpy(scores, "scores", 1)
    m = np.asarray(is_member.detach().cpu().numpy() if isinstance(is_member, torch.Tensor) else is_member)
    if m.shape != s.shape:
        raise ConfigError(f"scores and is_member must have one shape, got {s.shape} and {m.shape}")
    m = m.astype(bool)
    if m.all() or not m.any():
        raise ConfigError(f"a ROC needs members and non-members, got {int(m.sum())} members of {m.size}")
    fpr, tpr, thresholds = roc_curve(m, s, drop_intermediate=drop_intermediate)
    return Roc(fpr, tpr, thresholds, float(roc_auc_score(m, s)))


def tpr_at_fpr(fpr: ArrayLike, tpr: ArrayLike, target: float, *, inclusive: bool = False) -> float:
    """The largest TPR among ROC points whose FPR is below `target` (a fraction: 0.001 for 0.1%).

    Default: strictly below, `tpr[np.where(fpr < target)[0][-1]]`, exactly LiRA's `plot.py:do_plot`
    ("TPR@0.1%FPR"), which on a sorted ROC is the largest TPR with FPR < target. `inclusive=True` takes
    FPR <= target instead; the two differ only when some point has FPR exactly equal to the target.
    """
    f, t = _numpy(fpr, "fpr", 1), _numpy(tpr, "tpr", 1)
    if f.shape != t.shape:
        raise ConfigError(f"fpr and tpr must have one shape, got {f.shape} and {t.shape}")
    if not 0 < target <= 1:
        raise ConfigError(f"the target FPR must lie in (0, 1], got {target}")
    ok = f <= target if inclusive else f < target
    if not ok.any():
        raise ConfigError(f"no ROC point has FPR {'<=' if inclusive else '<'} {target}")
    return float(t[ok].max())


def best_accuracy(fpr: ArrayLike, tpr: ArrayLike) -> float:
    """max over thresholds of the balanced accuracy 1 - (FPR + (1 - TPR)) / 2 (LiRA's `plot.py:sweep` "acc")."""
    f, t = _numpy(fpr, "fpr", 1), _numpy(tpr, "tpr", 1)
    return float(np.max(1 - (f + (1 - t)) / 2))


# ---------------------------------------------------------------------------------------------------- U-LiRA

ULIRA_CENTERS = ("median", "mean")
ULIRA_VARIANCES = ("per_example", "global")
ULIRA_OFFLINE_TESTS = ("density", "one_sided")


def _gaussian_fit(values: np.ndarray, mask: np.ndarray, center: str, variance: str
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Location (median or mean), standard deviation (ddof 0) and shadow count of each column's masked values."""
    x = np.where(mask, values, np.nan)
    with warnings.catch_warnings():  # all-NaN columns (no shadow of that kind) are handled by the count
        warnings.simplefilter("ignore", RuntimeWarning)
        loc = np.nanmedian(x, axis=0) if center == "median" else np.nanmean(x, axis=0)
        scale = np.nanstd(x, axis=0)
    if variance == "global":
        scale = np.full(values.shape[1], np.std(values[mask]) if mask.any() else np.nan)
    return loc, scale, mask.sum(axis=0)


def ulira_scores(target: ArrayLike, shadows: ArrayLike, shadow_unlearned: ArrayLike, shadow_unseen: ArrayLike, *,
                 online: bool = True, center: str = "median", variance: str = "per_example",
                 offline_test: str = "density", min_shadows: int = 2) -> np.ndarray:
    """U-LiRA's per-example score for one target model; higher = more likely "trained on n, then unlearned".

    Inputs: `target` (N,) the target model's statistic on each example (e.g. `logit_confidence`);
    `shadows` (S, N) the same statistic for S shadow models; `shadow_unlearned[s, n]` True when shadow s
    trained on n and then unlearned it with the audited method (hypothesis IN); `shadow_unseen[s, n]` True
    when shadow s never trained on n (hypothesis OUT: a retrained oracle, or a model whose half left n out).
    Shadows that trained on n and kept it belong to neither and are ignored for n.

    The defaults are LiRA's code, which Hayes et al. ran on unlearned models (Hayes, meghdadk/SCRUB issue #1:
    "basically just run mi_lira_2021 on the unlearning" models). For each example, Gaussians are fitted to its
    IN and OUT shadow values: location mu = the median (center="median", LiRA's `plot.py:generate_ours`; the
    LiRA paper writes the mean, center="mean", as Apollo's `ULiRA.py` via `norm.fit`) and sigma = the
    standard deviation about the mean, ddof 0 (`np.std`), plus LiRA's 1e-30 guard. With x the target's value:

        online:                    log N(x; mu_in, sigma_in) - log N(x; mu_out, sigma_out)
        offline, "density":        -log N(x; mu_out, sigma_out)                (LiRA's `generate_ours_offline`)
        offline, "one_sided":      log Phi((x - mu_out) / sigma_out)           (the LiRA paper's one-sided test)

    The offline default follows the code; the paper's one-sided test assumes unlearning leaves the target
    *more* confident than never-seen models, which misses over-unlearning (confidence pushed below them),
    while the two-sided density flags both. variance="global" is LiRA's fixed-variance variant as its code
    computes it: one sigma = np.std of every IN shadow value of the pool (all examples together, so it
    includes the spread between examples), used for both IN and OUT in the online test (the code's
    `std_out = np.std(dat_in)`); offline, np.std of every OUT value. LiRA additionally truncates every
    example to the smallest IN (OUT) count of the pool, so its arrays are rectangular; we keep all shadows,
    because with small forget sets that minimum can be 0 or 1.

    Returns (N,) scores, NaN where the example has fewer than `min_shadows` IN shadows (online) or OUT
    shadows. Apollo scores those log(1) = 0 instead; `ulira` leaves them out of the ROC and counts them.
    """
    _choice(center, "U-LiRA center", ULIRA_CENTERS)
    _choice(variance, "U-LiRA variance", ULIRA_VARIANCES)
    _choice(offline_test, "U-LiRA offline test", ULIRA_OFFLINE_TESTS)
    if int(min_shadows) != min_shadows or min_shadows < 1:
        raise ConfigError(f"min_shadows must be a positive integer, got {min_shadows}")
    x = _numpy(target, "target", 1)
    s = _numpy(shadows, "shadows", 2)
    unl = _numpy(shadow_unlearned, "shadow_unlearned", 2, dtype=bool)
    uns = _numpy(shadow_unseen, "shadow_unseen", 2, dtype=bool)
    if not (s.shape == unl.shape == uns.shape) or s.shape[1] != x.shape[0]:
        raise ConfigError(f"shadows and both masks must be (S, N) with N = len(target) = {x.shape[0]}, got "
                          f"{s.shape}, {unl.shape} and {uns.shape}")
    if (unl & uns).any():
        raise ConfigError("a shadow cannot have both unlearned and never seen the same example")
    mu_out, sd_out, n_out = _gaussian_fit(s, uns, center, variance)
    if online:
        mu_in, sd_in, n_in = _gaussian_fit(s, unl, center, variance)
        if variance == "global":
            sd_out = sd_in  # LiRA's fixed-variance online attack uses the IN spread for both
        score = (stats.norm.logpdf(x, mu_in, sd_in + LIRA_STD_GUARD)
                 - stats.norm.logpdf(x, mu_out, sd_out + LIRA_STD_GUARD))
        ok = (n_in >= min_shadows) & (n_out >= min_shadows)
    else:
        if offline_test == "density":
            score = -stats.norm.logpdf(x, mu_out, sd_out + LIRA_STD_GUARD)
        else:
            score = stats.norm.logcdf((x - mu_out) / (sd_out + LIRA_STD_GUARD))
        ok = n_out >= min_shadows
    return np.where(ok, score, np.nan)


@dataclass(frozen=True)
class ULiRAResult:
    """The (target model, example) pairs U-LiRA scored, and the ROC summary over them.

    `labels` is True for a positive pair (the target trained on the example and unlearned it) and False
    for a negative one (the target never trained on it); `targets` and `examples` index the pool.
    """
    scores: np.ndarray
    labels: np.ndarray
    targets: np.ndarray
    examples: np.ndarray
    n_skipped: int
    auc: float
    tpr_at_1pct_fpr: float
    tpr_at_0p1pct_fpr: float
    accuracy: float

    @property
    def summary(self) -> dict[str, float]:
        return {"auc": self.auc, "tpr_at_1pct_fpr": self.tpr_at_1pct_fpr, "tpr_at_0p1pct_fpr": self.tpr_at_0p1pct_fpr}


def ulira(statistic: ArrayLike, unlearned: ArrayLike, unseen: ArrayLike, *, online: bool = True,
          center: str = "median", variance: str = "per_example", offline_test: str = "density",
          min_shadows: int = 2) -> ULiRAResult:
    """U-LiRA over a pool, leave one model out: each model in turn is the target, the other K - 1 its shadows.

    `statistic` (K, N) is each model's statistic on each example (LiRA and Hayes et al. use
    `logit_confidence`); `unlearned[k, n]` True when model k trained on n and then unlearned it with the
    audited method; `unseen[k, n]` True when model k never trained on n. The test distinguishes exactly
    these two hypotheses, so for target k:

        positives: every n with unlearned[k, n]   (its forget examples)
        negatives: every n with unseen[k, n]      (examples it never saw, e.g. held out of its half)

    and examples that k trained on and kept are not scored. Each pair's score is `ulira_scores` of
    statistic[k] against the other models (same options); the ROC, AUC and TPR at 1% and 0.1% FPR
    (`tpr_at_fpr`, strict as LiRA) are over all scored pairs together, as LiRA pools its targets. Pairs whose
    example has fewer than `min_shadows` usable shadows are left out and counted in `n_skipped`.
    `accuracy` is LiRA's best balanced accuracy (`best_accuracy`), which `plot.py` prints beside the AUC.

    A pool of unlearned models and of oracles (retrained without the forget set, so unseen there) is the
    intended input; the class ratio does not affect AUC or TPR at FPR.
    """
    stat = _numpy(statistic, "statistic", 2)
    unl = _numpy(unlearned, "unlearned", 2, dtype=bool)
    uns = _numpy(unseen, "unseen", 2, dtype=bool)
    if not stat.shape == unl.shape == uns.shape:
        raise ConfigError(f"statistic, unlearned and unseen must share one (K, N) shape, got {stat.shape}, "
                          f"{unl.shape} and {uns.shape}")
    if (unl & uns).any():
        raise ConfigError("a model cannot have both unlearned and never seen the same example")
    n_models = stat.shape[0]
    if n_models < 2:
        raise ConfigError(f"leave-one-out U-LiRA needs at least 2 models, got {n_models}")
    scores, labels, targets, examples = [], [], [], []
    skipped = 0
    for k in range(n_models):
        cols = np.flatnonzero(unl[k] | uns[k])
        if not len(cols):
            continue
        others = np.arange(n_models) != k
        s = ulira_scores(stat[k], stat[others], unl[others], uns[others], online=online, center=center,
                         variance=variance, offline_test=offline_test, min_shadows=min_shadows)[cols]
        good = ~np.isnan(s)
        skipped += int((~good).sum())
        scores.append(s[good])
        labels.append(unl[k, cols[good]])
        targets.append(np.full(int(good.sum()), k))
        examples.append(cols[good])
    if not scores:
        raise ConfigError("no model has an unlearned or never-seen example: nothing to score")
    big = np.finfo(np.float64).max  # a zero-variance shadow fit can give +-inf; keep the order, not the inf
    score = np.nan_to_num(np.concatenate(scores), posinf=big, neginf=-big)
    label = np.concatenate(labels)
    curve = roc(score, label)
    return ULiRAResult(score, label, np.concatenate(targets), np.concatenate(examples), skipped, curve.auc,
                       tpr_at_fpr(curve.fpr, curve.tpr, 0.01), tpr_at_fpr(curve.fpr, curve.tpr, 0.001),
                       best_accuracy(curve.fpr, curve.tpr))


# ------------------------------------------------------------------------------ NeurIPS 2023 challenge epsilon

CHALLENGE_DELTA = 1e-5
CHALLENGE_EPSILON_CAP = 50.0
CHALLENGE_THRESHOLDS_PER_UNIT = 100
CHALLENGE_BUFFER = 2.0
CHALLENGE_PEAKY_RATIO = 0.01
CHALLENGE_BUCKET_SIZE = 0.5
_RIGHT_CHUNK = 1024  # right thresholds per block of interval rules, to bound memory


def _rule_epsilons(fp: np.ndarray, fn: np.ndarray, n_neg: int, n_pos: int, delta: float) -> np.ndarray:
    """Each rule's epsilon from its false-positive and false-negative counts: inf for a perfect rule, NaN
    for a rule with exactly one zero rate (discarded), else max of the two log ratios, floored at 0."""
    fpr, fnr = fp / n_neg, fn / n_pos
    with np.errstate(divide="ignore", invalid="ignore"):
        eps = np.clip(np.fmax(np.log(1 - delta - fpr) - np.log(fnr), np.log(1 - delta - fnr) - np.log(fpr)), 0, None)
    eps = np.where((fp == 0) | (fn == 0), np.nan, eps)
    return np.where((fp == 0) & (fn == 0), np.inf, eps)


def _inside(sorted_values: np.ndarray, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """How many values lie in [left, right] (0 when left > right)."""
    hi = np.searchsorted(sorted_values, right, side="right")
    lo = np.searchsorted(sorted_values, left, side="left")
    return np.maximum(hi - lo, 0)


def _challenge_epsilon(pos: np.ndarray, neg: np.ndarray, delta: float, cap: float, per_unit: int, buffer: float,
                       peaky_ratio: float) -> float:
    pos_range, neg_range = pos.max() - pos.min(), neg.max() - neg.min()
    largest, smallest = max(pos_range, neg_range), min(pos_range, neg_range)
    if largest > 0 and smallest / largest < peaky_ratio:  # 0/0 is NaN in the scorer: no early exit
        return cap
    best, kept = -np.inf, False

    # Interval rules "peakier pool iff left <= x <= right"; ties in range make `neg` the peakier one.
    peaky, other = (neg, pos) if pos_range >= neg_range else (pos, neg)
    peaky_s, other_s = np.sort(peaky), np.sort(other)
    width = smallest
    lo, hi = peaky.min() + width - buffer, peaky.max() + buffer
    rights = np.linspace(lo, hi, int(np.ceil((hi - lo) * per_unit)))
    n_left = int(np.ceil(2 * buffer * per_unit))
    for start in range(0, len(rights), _RIGHT_CHUNK):
        r = rights[start:start + _RIGHT_CHUNK]
        left = np.linspace(r - width - buffer, r - width + buffer, n_left, axis=-1).reshape(-1)
        right = np.repeat(r, n_left)
        tp = _inside(peaky_s, left, right)
        fp = _inside(other_s, left, right)
        eps = _rule_epsilons(fp, len(peaky) - tp, len(other), len(peaky), delta)
        if (~np.isnan(eps)).any():
            best, kept = max(best, float(np.nanmax(eps))), True

    # Single-threshold rules "positive iff x >= t"; float32 thresholds, as the scorer's torch.linspace gives.
    both = np.concatenate([pos, neg])
    n_single = int(np.ceil((both.max() - both.min()) * per_unit))
    t = torch.linspace(float(both.min()), float(both.max()), n_single, dtype=torch.float32).numpy().astype(np.float64)
    tp = len(pos) - np.searchsorted(np.sort(pos), t, side="left")
    fp = len(neg) - np.searchsorted(np.sort(neg), t, side="left")
    eps = _rule_epsilons(fp, len(pos) - tp, len(neg), len(pos), delta)
    if (~np.isnan(eps)).any():
        best, kept = max(best, float(np.nanmax(eps))), True
    if not kept:
        raise ConfigError("every decision rule had a zero FPR or FNR (but not both): the pools are too small "
                          "for the challenge's epsilon")
    return float(np.clip(best, 0, cap))


def challenge_epsilons(unlearned: ArrayLike, retrained: ArrayLike, *, delta: float = CHALLENGE_DELTA,
                       epsilon_cap: float = CHALLENGE_EPSILON_CAP,
                       thresholds_per_unit: int = CHALLENGE_THRESHOLDS_PER_UNIT, buffer: float = CHALLENGE_BUFFER,
                       peaky_ratio: float = CHALLENGE_PEAKY_RATIO) -> np.ndarray:
    """Per-example epsilon of the NeurIPS 2023 unlearning challenge, between a statistic's values over
    unlearned models (K_u, N) and over retrained models (K_r, N); one value per example, in [0, epsilon_cap].

    google-deepmind/unlearning_evaluation `metric.py` (`compute_forget_score_from_confs` -> `_get_epsilons`),
    on the logit-scaled confidence (`logit_confidence(..., guard=1e-45)`). For each example n:
    1. The positive pool is the one with the larger median (retrained if median_r > median_u, else unlearned).
    2. If the smaller of the two pools' ranges (max - min) is under `peaky_ratio` (1%) of the larger, epsilon
       = epsilon_cap: one pool is so peaked that the rules below could miss it.
    3. Decision rules, each with FPR and FNR estimated as plain frequencies over the two pools (no
       Clopper-Pearson or other interval: the scorer uses none):
       - intervals "the peakier pool (smaller range; `neg` on a tie) iff l <= x <= r": right ends r =
         linspace(min_P + w - buffer, max_P + buffer, ceil(span * thresholds_per_unit)), w = range of P, and
         for each r, left ends linspace(r - w - buffer, r - w + buffer, ceil(2 * buffer * thresholds_per_unit));
       - thresholds "positive iff x >= t": t = linspace(min, max, ceil((max - min) * thresholds_per_unit)) over
         both pools together, in float32 as the scorer's torch.linspace returns them.
    4. Each rule's epsilon: inf if FPR = FNR = 0; discarded if exactly one of them is 0 (taken as too few
       samples); else max(log(1 - delta - FPR) - log FNR, log(1 - delta - FNR) - log FPR), floored at 0
       (a log of a non-positive number is ignored, as np.nanmax does).
    5. epsilon_n = max over the surviving rules, clipped to [0, epsilon_cap].

    Departures, none of which changes a number beyond float rounding: rates are exact counts in float64
    (the scorer averages float32 tensors); the pools may have different sizes (the scorer's tiling needs
    K_u = K_r); when no rule survives we raise ConfigError (the scorer's `assert thr_eps` on an array cannot
    serve as that check: NumPy refuses the truth value of a multi-element array).
    """
    u, r = _numpy(unlearned, "unlearned", 2), _numpy(retrained, "retrained", 2)
    if u.shape[1] != r.shape[1]:
        raise ConfigError(f"unlearned and retrained must cover the same examples, got {u.shape[1]} and {r.shape[1]}")
    if min(u.shape[0], r.shape[0]) < 2:
        raise ConfigError(f"the challenge's epsilon needs at least 2 models per pool, got {u.shape[0]} and "
                          f"{r.shape[0]}")
    if not 0 <= delta < 1:
        raise ConfigError(f"delta must lie in [0, 1), got {delta}")
    if thresholds_per_unit < 1 or buffer < 0 or epsilon_cap <= 0:
        raise ConfigError(f"thresholds_per_unit >= 1, buffer >= 0 and epsilon_cap > 0 expected, got "
                          f"{thresholds_per_unit}, {buffer} and {epsilon_cap}")
    retrain_positive = np.median(r, axis=0) > np.median(u, axis=0)
    out = np.empty(u.shape[1])
    for n in range(u.shape[1]):
        pos, neg = (r[:, n], u[:, n]) if retrain_positive[n] else (u[:, n], r[:, n])
        out[n] = _challenge_epsilon(pos, neg, delta, epsilon_cap, int(thresholds_per_unit), buffer, peaky_ratio)
    return out


def challenge_points(epsilons: ArrayLike, num_models: int, *, bucket_size: float = CHALLENGE_BUCKET_SIZE
                     ) -> np.ndarray:
    """The challenge's per-example score from epsilon: 2^-i for epsilon in bucket i = [i * b, (i + 1) * b),
    for the buckets that end at or before ceil(ln(num_models - 1)); 0 beyond (`metric.py`, b = 0.5).

    `num_models` is the number of unlearned models (the scorer's "back-of-the-envelope" largest
    measurable epsilon from that many samples); with 512 models the buckets end at 7, so epsilon >= 7 scores 0.
    """
    eps = _numpy(epsilons, "epsilons", 1, finite=False)  # NaN and inf score 0, as in the scorer
    if num_models < 2 or bucket_size <= 0:
        raise ConfigError(f"num_models >= 2 and bucket_size > 0 expected, got {num_models} and {bucket_size}")
    max_epsilon = math.ceil(math.log(num_models - 1))
    starts, points = [], []
    start, value = 0.0, 1.0
    while start + bucket_size <= max_epsilon:  # accumulated like the scorer, so float steps match
        starts.append(start)
        points.append(value)
        value /= 2
        start += bucket_size
    out = np.zeros(len(eps))
    for s, p in zip(reversed(starts), reversed(points)):  # the first bucket that holds e wins
        out = np.where(eps < s + bucket_size, p, out)
    return out


def challenge_forget_score(unlearned: ArrayLike, retrained: ArrayLike, *, delta: float = CHALLENGE_DELTA,
                           bucket_size: float = CHALLENGE_BUCKET_SIZE, **epsilon_options) -> float:
    """The challenge's forgetting quality F: the mean over forget examples of `challenge_points` of
    `challenge_epsilons(unlearned, retrained)`, num_models = K_u. 1 is indistinguishable, 0 is the worst.

    The leaderboard's final score multiplies F by (RA_u / RA_r) * (TA_u / TA_r), mean retain and test
    accuracies of the unlearned vs retrained pools (`main.py`); that utility factor is not computed here.
    """
    eps = challenge_epsilons(unlearned, retrained, delta=delta, **epsilon_options)
    return float(challenge_points(eps, _numpy(unlearned, "unlearned", 2).shape[0], bucket_size=bucket_size).mean())


# ------------------------------------------------------------------------------------------------------ KLOM

KLOM_BINS = 20
KLOM_EPS = 1e-5
KLOM_CLIP = (-100.0, 100.0)
_KLOM_CHUNK = 4096  # examples per block, to bound the (K, chunk, bins) comparison array


def _histograms(x: np.ndarray, edges: np.ndarray, bins: int, keep_top_edge: bool) -> np.ndarray:
    """Per-column counts (N, bins) of x (K, N) in np.digitize's bins: edges[i-1] <= x < edges[i]."""
    index = (x[:, :, None] >= edges[None, :, :]).sum(-1)  # = np.digitize(x, edges) per column
    if keep_top_edge:
        index = np.minimum(index, bins)
    return np.stack([(index == b).sum(0) for b in range(1, bins + 1)], axis=-1)


def klom(unlearned: ArrayLike, oracle: ArrayLike, *, bins: int = KLOM_BINS, eps: float = KLOM_EPS,
         clip: tuple[float, float] = KLOM_CLIP, keep_top_edge: bool = False) -> np.ndarray:
    """KLOM per example: KL(unlearned || oracle) in nats between the binned distributions of a margin
    (`margins`) over unlearned models (K_u, N) and over oracle models (K_o, N). 0 is indistinguishable.

    Exactly data-unlearning-bench `eval.py:compute_binned_KL_div` with p = unlearned, q = oracle, per example:
    1. clip both samples to [clip[0], clip[1]] (-100, 100);
    2. edges = linspace(a, b, bins + 1), a = min and b = max over both clipped samples (b = a + 1 if a >= b);
    3. counts by np.digitize(x, edges) = i for edges[i-1] <= x < edges[i], i = 1..bins, so a sample equal to b
       falls outside every bin and is dropped (keep_top_edge=True puts it in the last bin instead, as
       np.histogram does; the code drops it). p_i, q_i = counts / their totals (all 0 if nothing is left);
    4. smoothing: q'_i = max(q_i, eps) where p_i > 0, q'_i = q_i elsewhere;
    5. KLOM = sum_i p~_i log(p~_i / q~_i) with p~, q~ = p, q' each renormalised to sum 1 (scipy.stats.entropy);
       NaN when no unlearned sample is left in any bin (all of them equal b), as the code gives.

    Direction: p = unlearned, q = oracle, as the paper, the function's argument names, the original
    MadryLab auditor (`direct.py`) and EasyDUB's `klom_from_margins` have it; data-unlearning-bench's
    `run.py:load_klom` passes the two pools in swapped order, which gives KL(oracle || unlearned): call
    `klom(oracle, unlearned)` for that. EasyDUB skips the renormalisation of q' (a difference of at most
    log(1 + bins * eps) ~ 2e-4 nats). The paper summarises with the 95th percentile (`klom_summary`).
    """
    p, q = _numpy(unlearned, "unlearned", 2), _numpy(oracle, "oracle", 2)
    if p.shape[1] != q.shape[1]:
        raise ConfigError(f"unlearned and oracle must cover the same examples, got {p.shape[1]} and {q.shape[1]}")
    if int(bins) != bins or bins < 1 or eps <= 0 or not clip[0] < clip[1]:
        raise ConfigError(f"bins >= 1, eps > 0 and clip (low, high) with low < high expected, got {bins}, {eps} "
                          f"and {clip}")
    bins = int(bins)
    p, q = np.clip(p, *clip), np.clip(q, *clip)
    start = np.minimum(p.min(0), q.min(0))
    end = np.maximum(p.max(0), q.max(0))
    end = np.where(start >= end, start + 1, end)
    edges = np.linspace(start, end, bins + 1, axis=-1)  # (N, bins + 1), identical to one linspace per example
    out = np.empty(p.shape[1])
    for c in range(0, p.shape[1], _KLOM_CHUNK):
        cols = slice(c, c + _KLOM_CHUNK)
        pc = _histograms(p[:, cols], edges[cols], bins, keep_top_edge).astype(np.float64)
        qc = _histograms(q[:, cols], edges[cols], bins, keep_top_edge).astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            pp = pc / pc.sum(-1, keepdims=True)
            qp = np.nan_to_num(qc / qc.sum(-1, keepdims=True))
            qs = np.where(pp > 0, np.maximum(qp, eps), qp)
            qs = qs / qs.sum(-1, keepdims=True)
            out[cols] = np.where(pp > 0, pp * np.log(pp / qs), 0.0).sum(-1)
        out[cols] = np.where(pc.sum(-1) > 0, out[cols], np.nan)
    return out


def klom_summary(values: ArrayLike) -> dict[str, float]:
    """{"p95": np.percentile(values, 95) (linear interpolation), "mean": the mean} of per-example KLOM values.

    Attribute-to-Delete reports the 95th percentile of KLOM over each set of points (forget, retain,
    validation), as EasyDUB's `eval_pretrain.py` prints it; the mean is given alongside. A NaN value
    (see `klom`) makes both NaN rather than being dropped silently.
    """
    v = np.asarray(values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else values, dtype=np.float64)
    if v.ndim != 1 or not len(v):
        raise ConfigError(f"klom_summary needs a non-empty 1-D array, got shape {v.shape}")
    return {"p95": float(np.percentile(v, 95)), "mean": float(v.mean())}
