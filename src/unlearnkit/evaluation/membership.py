"""Membership-inference attacks (MIA): does the model still treat the forget set like training data?

Both attacks learn, from the model's own outputs, to tell members (remain-set samples, which it was
trained on) from non-members (test samples), then report the share of the forget set they call
"member", in percent. Neither number is good or bad by itself: an exact unlearner (the oracle) treats
D_f like unseen data, so the protocol compares each to the oracle's value, and Avg.Gap uses the gap.

The two named attacks differ in feature, classifier and shadow sets:

| name       | mia_entropy                         | mia_svc                     |
|------------|-------------------------------------|-----------------------------|
| from       | SFR-on (reported MIA)               | SalUn ("MIA-efficacy")      |
| feature    | Shannon entropy of softmax          | softmax prob. of true class |
| classifier | LogisticRegression, balanced, lbfgs | SVC(C=3, RBF, gamma="auto") |
| members    | all of D_r                          | as many of D_r as test      |

Non-members are the whole test set in both.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from ..errors import ConfigError
from ..registry import Registry
from .outputs import Outputs

Attack = Callable[..., float]
ATTACKS: Registry[Attack] = Registry("membership attack")


def shannon_entropy(logits: torch.Tensor) -> np.ndarray:
    """H(x) = -sum_k p_k log p_k in nats, p = softmax(logits), with 0 log 0 = 0; one value per row."""
    log_p = torch.log_softmax(torch.as_tensor(logits, dtype=torch.float64), dim=1)
    return (-(log_p.exp() * log_p).nan_to_num(0.0).sum(dim=1)).numpy()


def true_class_confidence(logits: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
    """p_y(x) = softmax(logits)_y, the probability given to the true label; one value per row."""
    p = torch.softmax(torch.as_tensor(logits, dtype=torch.float64), dim=1)
    return p.gather(1, torch.as_tensor(labels).reshape(-1, 1).long()).squeeze(1).numpy()


def _fit_predict(classifier, members: np.ndarray, nonmembers: np.ndarray, targets: np.ndarray) -> float:
    members, nonmembers, targets = (np.asarray(a, dtype=np.float64).reshape(len(a), -1)
                                    for a in (members, nonmembers, targets))
    if not len(members) or not len(nonmembers) or not len(targets):
        raise ConfigError(f"a membership attack needs members, non-members and targets; got "
                          f"{len(members)}, {len(nonmembers)} and {len(targets)} samples")
    x = np.concatenate([members, nonmembers])
    y = np.concatenate([np.ones(len(members)), np.zeros(len(nonmembers))])
    classifier.fit(x, y)
    return 100.0 * float(classifier.predict(targets).mean())


def membership_rate_lr(members: np.ndarray, nonmembers: np.ndarray, targets: np.ndarray) -> float:
    """Percent of `targets` predicted member by a logistic regression fit on members (1) vs non-members (0).

    The official SFR-on attack is LogisticRegression(class_weight="balanced", solver="lbfgs",
    multi_class="multinomial"). scikit-learn >= 1.7 has no multi_class: a binary fit is always binomial.
    A two-class softmax with an L2 penalty on both weight rows equals a binomial fit with twice the C
    (the penalty on w = w1 - w0 is minimised at w1 = -w0, halving it), so C=2 reproduces the official fit.
    """
    from sklearn.linear_model import LogisticRegression

    return _fit_predict(LogisticRegression(C=2.0, class_weight="balanced", solver="lbfgs"), members, nonmembers,
                        targets)


def membership_rate_svc(members: np.ndarray, nonmembers: np.ndarray, targets: np.ndarray) -> float:
    """Percent of `targets` predicted member by SVC(C=3, kernel="rbf", gamma="auto") fit on members (1)
    vs non-members (0), without class weights (SalUn's `SVC_fit_predict`). libsvm is deterministic here."""
    from sklearn.svm import SVC

    return _fit_predict(SVC(C=3, kernel="rbf", gamma="auto"), members, nonmembers, targets)


@ATTACKS.register("mia_entropy")
def mia_entropy(remain: Outputs, test: Outputs, forget: Outputs, seed: int = 0) -> float:
    """SFR-on's MIA column, in percent: the share of D_f that an entropy attack calls "member".

    Feature: the Shannon entropy of the softmax output (`shannon_entropy`). Attack: `membership_rate_lr`
    trained on every D_r sample (label 1) vs every test sample (label 0), then applied to D_f
    (official `Classification/evaluation/mia.py:get_membership_attack_prob(..., "entropy")`, whose
    `results.mean()` the table shows x100: RT = 74.84 on CIFAR-10). Compared to the oracle's value
    (a gap, not a direction). `seed` is unused: the attack involves no randomness.
    """
    return membership_rate_lr(shannon_entropy(remain.logits), shannon_entropy(test.logits),
                              shannon_entropy(forget.logits))


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
    """-log softmax(logits)_y, the loss on the true label; one value per row."""
    log_p = torch.log_softmax(torch.as_tensor(logits, dtype=torch.float64), dim=1)
    return -log_p.gather(1, torch.as_tensor(labels).reshape(-1, 1).long()).squeeze(1).numpy()


@ATTACKS.register("mia_entropy_scaled")
def mia_entropy_scaled(remain: Outputs, test: Outputs, forget: Outputs, seed: int = 0) -> float:
    """`mia_entropy` with its feature standardised (scikit-learn's StandardScaler, fit on D_r and test) before the
    same logistic regression. The official attack fits raw entropies with an L2 penalty: on a model whose
    entropies are all tiny (full MNIST: most below 1e-4) the weight a threshold needs costs more in the penalty
    than it gains, the fit is its intercept alone, and the share of D_f called member jumps between 0 and 100%
    from model to model (a second oracle 89.6 points from the oracle, docs/defaults.md). Standardised, the attack
    is the same threshold rule at any scale of the entropies."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    attack = make_pipeline(StandardScaler(), LogisticRegression(C=2.0, class_weight="balanced", solver="lbfgs"))
    return _fit_predict(attack, shannon_entropy(remain.logits), shannon_entropy(test.logits),
                        shannon_entropy(forget.logits))


@ATTACKS.register("mia_loss")
def mia_loss(remain: Outputs, test: Outputs, forget: Outputs, seed: int = 0) -> float:
    """The loss-threshold attack (Yeom et al. 2018), in percent: the share of D_f whose loss is at most the
    threshold that best separates D_r (members) from the test set (non-members), read like `mia_entropy`.

    The threshold maximises Youden's J = TPR - FPR over the ROC of "member if loss <= t" (scikit-learn's
    `roc_curve` on the negated loss). `seed` is unused: the attack involves no randomness.
    """
    from sklearn.metrics import roc_curve

    members, nonmembers = cross_entropy(remain.logits, remain.labels), cross_entropy(test.logits, test.labels)
    if not len(members) or not len(nonmembers) or not len(forget):
        raise ConfigError("the loss attack needs members, non-members and targets")
    truth = np.concatenate([np.ones(len(members)), np.zeros(len(nonmembers))])
    fpr, tpr, thresholds = roc_curve(truth, -np.concatenate([members, nonmembers]))
    threshold = -thresholds[int(np.argmax(tpr - fpr))]
    return 100.0 * float((cross_entropy(forget.logits, forget.labels) <= threshold).mean())


SHADOW_PICKS = ("random", "first")


@ATTACKS.register("mia_svc")
def mia_svc(remain: Outputs, test: Outputs, forget: Outputs, seed: int = 0, shadow: str = "random") -> float:
    """SalUn's SVC attack on the forget set, in percent, read like `mia_entropy`: the share of D_f called "member".

    Feature: the true-class confidence p_y(x) (`true_class_confidence`; SalUn's reported "confidence"
    attack). Shadow training: n = min(|test|, |D_r|) samples of D_r (label 1) vs the whole test set
    (label 0), fit with `membership_rate_svc`, then applied to D_f (SalUn `main_random.py`:
    `SVC_MIA(shadow_train=retain[:|test|], shadow_test=test, target_train=None, target_test=forget)`).
    Which D_r samples: `shadow="random"` (default) draws them with numpy's default_rng(seed), so the
    model and its oracle are attacked with the same shadow set; `shadow="first"` takes the first n in
    training-index order, exactly SalUn's `Subset(retain_dataset, range(test_len))`, which is a fair
    sample only when the training set is stored in random order (CIFAR is; a class-sorted folder is not).

    Relation to SalUn: SalUn's "MIA-efficacy" is `1 - predict(D_f).mean()`, the share called NON-member,
    so MIA-efficacy (%) = 100 - mia_svc. Compared to the oracle's value, like every MIA here.
    """
    if shadow not in SHADOW_PICKS:
        raise ConfigError(f"unknown shadow pick '{shadow}'; expected one of: {', '.join(SHADOW_PICKS)}")
    n = min(len(test), len(remain))
    if shadow == "first":
        chosen = np.arange(n)
    else:
        chosen = np.sort(np.random.default_rng(seed).choice(len(remain), size=n, replace=False))
    rows = torch.as_tensor(chosen, dtype=torch.long)
    members = true_class_confidence(remain.logits[rows], remain.labels[rows])
    return membership_rate_svc(members, true_class_confidence(test.logits, test.labels),
                               true_class_confidence(forget.logits, forget.labels))
