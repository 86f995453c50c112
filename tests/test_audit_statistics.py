"""Per-example audit statistics (unlearnkit.audit) against closed-form answers."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats
from scipy.stats import norm

from unlearnkit.audit import (
    best_accuracy,
    challenge_epsilons,
    challenge_forget_score,
    challenge_points,
    klom,
    klom_summary,
    logit_confidence,
    margins,
    roc,
    tpr_at_fpr,
    ulira,
    ulira_scores,
)
from unlearnkit.errors import ConfigError


def quantile_sample(n: int, shift: float = 0.0) -> np.ndarray:
    """A deterministic stand-in for n draws of N(shift, 1): the normal quantiles at (i + 1/2) / n."""
    return shift + norm.ppf((np.arange(n) + 0.5) / n)


# -------------------------------------------------------------------------------------------------- statistics

def test_logit_confidence_is_the_log_odds_of_the_true_class():
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, -1.0]], dtype=torch.float64)
    labels = torch.tensor([0, 2])
    # Row 1: p_y = e^2 / (e^2 + 2), so log(p / (1 - p)) = 2 - log 2. Row 2: -1 - log(1 + e).
    expected = [2 - math.log(2), -1 - math.log(1 + math.e)]
    np.testing.assert_allclose(logit_confidence(logits, labels), expected, rtol=1e-12)
    p = torch.softmax(logits, 1)[[0, 1], [0, 2]].numpy()
    np.testing.assert_allclose(logit_confidence(logits, labels), np.log(p / (1 - p)), rtol=1e-12)


def test_logit_confidence_keeps_leading_axes_and_broadcasts_labels():
    logits = torch.randn(4, 5, 3, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 1, 2, 1, 0])
    out = logit_confidence(logits, labels)
    assert out.shape == (4, 5)
    np.testing.assert_allclose(out[2], logit_confidence(logits[2], labels), rtol=1e-12)


def test_logit_confidence_guard_reproduces_the_official_formula_and_its_saturation():
    logits = np.random.default_rng(0).normal(size=(6, 4))
    labels = np.array([0, 1, 2, 3, 0, 1])
    np.testing.assert_allclose(logit_confidence(logits, labels, guard=1e-45), logit_confidence(logits, labels),
                               rtol=1e-10)
    huge = np.array([[200.0, 0.0]])
    assert logit_confidence(huge, [0]) == pytest.approx(200.0)  # exact in log space
    # Officially p_wrong = e^-200 ~ 1e-87 is swamped by the 1e-45 guard: phi = -log(1e-45) ~ 103.6.
    assert logit_confidence(huge, [0], guard=1e-45)[0] == pytest.approx(-math.log(1e-45), rel=1e-9)


def test_margins_follow_the_klom_code_and_offer_the_max_margin():
    logits = torch.tensor([[3.0, 1.0, 2.0]], dtype=torch.float64)
    assert margins(logits, [0])[0] == pytest.approx(3 - math.log(math.e + math.e ** 2), rel=1e-12)
    assert margins(logits, [0], other="max")[0] == pytest.approx(1.0)
    np.testing.assert_allclose(margins(logits, [1]), logit_confidence(logits, [1]), rtol=1e-12)


def test_statistics_reject_bad_labels_and_options():
    with pytest.raises(ConfigError, match="labels must lie"):
        logit_confidence(torch.zeros(2, 3), torch.tensor([0, 3]))
    with pytest.raises(ConfigError, match="at least 2 classes"):
        margins(torch.zeros(2, 1), torch.tensor([0, 0]))
    with pytest.raises(ConfigError, match="unknown margin"):
        margins(torch.zeros(2, 3), torch.tensor([0, 0]), other="min")


# -------------------------------------------------------------------------------------------------------- ROC

def test_roc_of_identical_distributions_has_auc_one_half():
    same = quantile_sample(500)
    curve = roc(np.concatenate([same, same]), np.r_[np.ones(500), np.zeros(500)])
    assert curve.auc == pytest.approx(0.5, abs=1e-12)  # every member ties with one non-member
    rng = np.random.default_rng(0)
    assert roc(rng.normal(size=20000), rng.random(20000) < 0.5).auc == pytest.approx(0.5, abs=0.01)


@pytest.mark.parametrize("d", [0.5, 1.0, 2.0])
def test_roc_of_two_gaussians_has_the_analytic_auc(d):
    n = 4000
    curve = roc(np.concatenate([quantile_sample(n, d), quantile_sample(n)]), np.r_[np.ones(n), np.zeros(n)])
    assert curve.auc == pytest.approx(norm.cdf(d / math.sqrt(2)), abs=2e-3)
    assert curve.fpr[0] == 0 and curve.tpr[-1] == 1


def test_tpr_at_fpr_on_a_hand_made_roc():
    fpr = np.array([0.0, 0.0, 0.005, 0.01, 0.02, 1.0])
    tpr = np.array([0.0, 0.1, 0.3, 0.4, 0.6, 1.0])
    assert tpr_at_fpr(fpr, tpr, 0.01) == 0.3  # LiRA: strictly below the target
    assert tpr_at_fpr(fpr, tpr, 0.01, inclusive=True) == 0.4
    assert tpr_at_fpr(fpr, tpr, 0.001) == 0.1
    assert best_accuracy(fpr, tpr) == pytest.approx(1 - (0.02 + 0.4) / 2)
    with pytest.raises(ConfigError, match="target FPR"):
        tpr_at_fpr(fpr, tpr, 0.0)


def test_tpr_at_fpr_on_the_roc_of_hand_made_scores():
    # Members 10, 9, 4; non-members 8, 3, 2, 1: at FPR 0 two of three members are above every non-member.
    curve = roc([10, 9, 4, 8, 3, 2, 1], [1, 1, 1, 0, 0, 0, 0])
    assert tpr_at_fpr(curve.fpr, curve.tpr, 0.2) == pytest.approx(2 / 3)
    assert tpr_at_fpr(curve.fpr, curve.tpr, 0.25, inclusive=True) == pytest.approx(1.0)
    assert curve.auc == pytest.approx(11 / 12)  # 11 of the 12 member/non-member pairs are ordered right


def test_roc_needs_both_classes():
    with pytest.raises(ConfigError, match="members and non-members"):
        roc([0.1, 0.2], [1, 1])


# ---------------------------------------------------------------------------------------------------- U-LiRA

def test_ulira_scores_match_the_closed_form_likelihood_ratio():
    shadows = np.array([[1.0], [2.0], [3.0], [-1.0], [0.0], [1.0]])
    unlearned = np.array([[True], [True], [True], [False], [False], [False]])
    # IN: median 2, OUT: median 0, both sigma^2 = 2/3. At x = 1.5: (2.25 - 0.25) / (2 * 2/3) = 1.5.
    score = ulira_scores([1.5], shadows, unlearned, ~unlearned)
    assert score[0] == pytest.approx(1.5, rel=1e-9)
    offline = ulira_scores([1.5], shadows, unlearned, ~unlearned, online=False)
    assert offline[0] == pytest.approx(-norm.logpdf(1.5, 0.0, math.sqrt(2 / 3)), rel=1e-9)
    one_sided = ulira_scores([1.5], shadows, unlearned, ~unlearned, online=False, offline_test="one_sided")
    assert one_sided[0] == pytest.approx(norm.logcdf(1.5 / math.sqrt(2 / 3)), rel=1e-9)


def test_ulira_scores_leave_out_examples_with_too_few_shadows():
    shadows = np.zeros((4, 2)) + np.arange(4)[:, None]
    unlearned = np.array([[True, True], [True, False], [False, False], [False, False]])
    score = ulira_scores([0.5, 0.5], shadows, unlearned, ~unlearned)
    assert not np.isnan(score[0]) and np.isnan(score[1])  # example 1 has a single IN shadow
    assert not np.isnan(ulira_scores([0.5, 0.5], shadows, unlearned, ~unlearned, min_shadows=1)[1])


def synthetic_pool(d: float, n_models: int = 64, n_examples: int = 200, seed: int = 0):
    """Each model unlearned or never saw each example (half and half); statistic ~ mu_n + d * unlearned + N(0, 1)."""
    rng = np.random.default_rng(seed)
    unlearned = rng.random((n_models, n_examples)) < 0.5
    offsets = rng.normal(0, 3, n_examples)  # per-example difficulty, which a per-example attack calibrates away
    return offsets + d * unlearned + rng.normal(size=(n_models, n_examples)), unlearned


def test_ulira_on_gaussian_pools_reaches_the_analytic_auc():
    d = 1.5
    statistic, unlearned = synthetic_pool(d)
    result = ulira(statistic, unlearned, ~unlearned)
    assert result.auc == pytest.approx(norm.cdf(d / math.sqrt(2)), abs=0.02)
    assert result.summary == {"auc": result.auc, "tpr_at_1pct_fpr": result.tpr_at_1pct_fpr,
                              "tpr_at_0p1pct_fpr": result.tpr_at_0p1pct_fpr}
    assert 0 < result.tpr_at_0p1pct_fpr <= result.tpr_at_1pct_fpr < 1
    # A global threshold on the raw statistic is fooled by the per-example offsets.
    assert roc(statistic.ravel(), unlearned.ravel()).auc < result.auc - 0.15
    for options in ({"center": "mean"}, {"variance": "global"}, {"online": False, "offline_test": "one_sided"}):
        assert ulira(statistic, unlearned, ~unlearned, **options).auc == pytest.approx(0.855, abs=0.025)


def test_ulira_on_identical_pools_is_at_chance():
    statistic, unlearned = synthetic_pool(0.0)
    assert ulira(statistic, unlearned, ~unlearned).auc == pytest.approx(0.5, abs=0.03)


def test_ulira_scores_forget_examples_against_never_seen_ones_leaving_one_model_out():
    statistic, unlearned = synthetic_pool(1.0, n_models=12, n_examples=30, seed=1)
    unseen = ~unlearned
    retained = np.random.default_rng(2).random(unlearned.shape) < 0.2  # trained and kept: neither hypothesis
    unlearned, unseen = unlearned & ~retained, unseen & ~retained
    result = ulira(statistic, unlearned, unseen)
    assert len(result.scores) + result.n_skipped == int((unlearned | unseen).sum())
    np.testing.assert_array_equal(result.labels, unlearned[result.targets, result.examples])
    assert not retained[result.targets, result.examples].any()
    k, n = int(result.targets[0]), int(result.examples[0])
    others = np.arange(12) != k  # the target is never its own shadow
    expected = ulira_scores(statistic[k], statistic[others], unlearned[others], unseen[others])[n]
    assert result.scores[0] == pytest.approx(expected, rel=1e-12)


def test_ulira_rejects_inconsistent_masks():
    statistic, unlearned = synthetic_pool(1.0, n_models=4, n_examples=5)
    with pytest.raises(ConfigError, match="both unlearned and never seen"):
        ulira(statistic, unlearned, np.ones_like(unlearned))
    with pytest.raises(ConfigError, match="boolean mask"):
        ulira(statistic, unlearned.astype(int), ~unlearned)


# ---------------------------------------------------------------------------------------- challenge epsilon

def reference_epsilon(pos: np.ndarray, neg: np.ndarray, delta: float = 1e-5) -> float:
    """A dense re-derivation of one example's epsilon: every rule's rates by direct comparison, no sorting."""
    pr, nr = np.ptp(pos), np.ptp(neg)
    if min(pr, nr) / max(pr, nr) < 0.01:
        return 50.0
    peaky, other = (neg, pos) if pr >= nr else (pos, neg)
    w = min(pr, nr)
    right = np.linspace(peaky.min() + w - 2, peaky.max() + 2, int(np.ceil((peaky.max() + 2 - (peaky.min() + w - 2))
                                                                         * 100)))
    left = np.concatenate([np.linspace(r - w - 2, r - w + 2, 400) for r in right])
    right = np.repeat(right, 400)
    inside = lambda c: ((left[:, None] <= c) & (c <= right[:, None])).mean(1)  # noqa: E731
    rates = [(inside(other), 1 - inside(peaky))]
    both = np.concatenate([pos, neg])
    t = np.linspace(both.min(), both.max(), int(np.ceil(np.ptp(both) * 100))).astype(np.float32).astype(np.float64)
    rates.append(((neg[None, :] >= t[:, None]).mean(1), (pos[None, :] < t[:, None]).mean(1)))
    best = []
    for fpr, fnr in rates:
        for f, g in zip(fpr, fnr):
            if f == 0 and g == 0:
                best.append(math.inf)
            elif f > 0 and g > 0:
                terms = [math.log(1 - delta - a) - math.log(b) for a, b in ((f, g), (g, f)) if 1 - delta - a > 0]
                if terms:
                    best.append(max(0.0, max(terms)))
    return min(max(best), 50.0)


def test_epsilon_of_identical_pools_is_zero_and_their_forget_score_one():
    pool = np.random.default_rng(0).normal(size=(16, 5))
    np.testing.assert_array_equal(challenge_epsilons(pool, pool.copy()), np.zeros(5))
    assert challenge_forget_score(pool, pool.copy()) == 1.0


def test_epsilon_on_a_hand_made_example_with_known_rates():
    # Unlearned {2, 3, 4, 5} has the larger median, so it is the positive pool. The best usable rules
    # (e.g. "x >= 2.5") have FPR = FNR = 1/4; none separates the pools, so epsilon = log((3/4 - delta) / (1/4)).
    unlearned = np.array([[2.0], [3.0], [4.0], [5.0]])
    retrained = np.array([[0.0], [1.0], [2.0], [3.0]])
    eps = challenge_epsilons(unlearned, retrained)
    assert eps[0] == pytest.approx(math.log(3 - 4e-5), rel=1e-9)
    # 4 models: buckets of 0.5 up to ceil(log 3) = 2; epsilon ~ 1.0986 is in bucket 2, worth 1/4.
    assert challenge_forget_score(unlearned, retrained) == pytest.approx(0.25)
    assert challenge_epsilons(unlearned, retrained, delta=0.1)[0] == pytest.approx(math.log(2.6), rel=1e-9)


def test_epsilon_interval_rules_are_closed_at_both_ends():
    # Unlearned {0, 1, 2, 2} is the peakier pool (range 2 < 4); no threshold rule beats epsilon 0 here, but the
    # interval [1, 4] (its last right end, max + buffer = 4, exactly) holds 3/4 of it and both retrained 4s:
    # FNR = 1/4, FPR = 1/2, epsilon = log((1/2 - delta) / (1/4)).
    unlearned = np.array([[0.0], [2.0], [1.0], [2.0]])
    retrained = np.array([[0.0], [4.0], [4.0], [0.0]])
    assert challenge_epsilons(unlearned, retrained)[0] == pytest.approx(math.log(2 - 4e-5), rel=1e-9)


def test_epsilon_is_capped_for_separated_or_peaked_pools():
    retrained = np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0], [3.0, 3.0]])
    unlearned = np.array([[5.0, 1.0], [6.0, 1.0], [7.0, 1.0], [8.0, 1.001]])
    # Column 0: a threshold at 4 separates them (FPR = FNR = 0, epsilon = inf, capped at 50).
    # Column 1: the unlearned range is 0.001 / 3 < 1% of the retrained one: the scorer's peakiness cap.
    np.testing.assert_array_equal(challenge_epsilons(unlearned, retrained), [50.0, 50.0])
    assert challenge_forget_score(unlearned, retrained) == 0.0


def test_epsilon_matches_a_dense_rederivation_on_random_pools():
    rng = np.random.default_rng(3)
    unlearned = rng.normal(0.4, 1.0, size=(7, 4))
    retrained = rng.normal(0.0, 0.8, size=(9, 4))
    eps = challenge_epsilons(unlearned, retrained)
    for n in range(4):
        u, r = unlearned[:, n], retrained[:, n]
        pos, neg = (r, u) if np.median(r) > np.median(u) else (u, r)
        assert eps[n] == pytest.approx(reference_epsilon(pos, neg), rel=1e-12)


def test_epsilon_matches_the_dense_rederivation_on_tied_integer_pools():
    # Integer values sit exactly on some interval ends (max_P - 2, max_P + 2, ...): the closed intervals count them.
    rng = np.random.default_rng(4)
    unlearned = rng.integers(0, 4, size=(6, 6)).astype(float)
    retrained = rng.integers(1, 6, size=(6, 6)).astype(float)
    unlearned[0], retrained[0] = 0.0, 5.0  # every column spans a range
    eps = challenge_epsilons(unlearned, retrained)
    for n in range(6):
        u, r = unlearned[:, n], retrained[:, n]
        pos, neg = (r, u) if np.median(r) > np.median(u) else (u, r)
        assert eps[n] == pytest.approx(reference_epsilon(pos, neg), rel=1e-12)


def test_challenge_points_halve_per_bucket_up_to_the_measurable_epsilon():
    eps = np.array([0.0, 0.49, 0.5, 1.2, 6.9, 7.0, 50.0, np.nan])
    # 512 models: buckets [0, 0.5), [0.5, 1), ... up to ceil(log 511) = 7; 1.2 is in bucket 2, 6.9 in bucket 13.
    expected = [1.0, 1.0, 0.5, 0.25, 2.0 ** -13, 0.0, 0.0, 0.0]
    np.testing.assert_array_equal(challenge_points(eps, 512), expected)


def test_challenge_rejects_tiny_pools():
    with pytest.raises(ConfigError, match="at least 2 models"):
        challenge_epsilons(np.zeros((1, 3)), np.zeros((4, 3)))


# ------------------------------------------------------------------------------------------------------ KLOM

def test_klom_of_identical_samples_is_zero():
    margin = np.random.default_rng(0).normal(size=(50, 8))
    np.testing.assert_allclose(klom(margin, margin.copy()), np.zeros(8), atol=1e-15)
    summary = klom_summary(klom(margin, margin.copy()))
    assert summary == {"p95": pytest.approx(0.0, abs=1e-15), "mean": pytest.approx(0.0, abs=1e-15)}


def test_klom_of_shifted_histograms_matches_a_hand_computed_value():
    unlearned = np.array([[0.0, 0.0], [0.0, 0.0], [1.0, 4.0], [2.0, 0.0], [4.0, 0.0]])
    oracle = np.array([[0.0, 1.0], [1.0, 1.0], [1.0, 4.0], [2.0, 1.0], [4.0, 1.0]])
    # Column 0, 4 bins on [0, 4]; the code drops the samples equal to 4 (the top edge):
    #   p = (2, 1, 1, 0) / 4, q = (1, 2, 1, 0) / 4  ->  KL = 1/2 ln 2 - 1/4 ln 2 = ln 2 / 4.
    # Column 1: p = (1, 0, 0, 0), q = (0, 1, 0, 0); q gets eps in bin 1 and is renormalised:
    #   KL = ln(1 / (eps / (1 + eps))).
    values = klom(unlearned, oracle, bins=4)
    np.testing.assert_allclose(values, [math.log(2) / 4, math.log((1 + 1e-5) / 1e-5)], rtol=1e-12)
    # Kept in the last bin instead: p = (2, 1, 1, 1) / 5, q = (1, 2, 1, 1) / 5  ->  KL = ln 2 / 5.
    assert klom(unlearned, oracle, bins=4, keep_top_edge=True)[0] == pytest.approx(math.log(2) / 5, rel=1e-12)


def test_klom_is_directed_from_the_unlearned_pool_to_the_oracle_pool():
    unlearned = np.array([[0.0], [0.0], [0.0], [1.0], [4.0]])  # p = (3, 1, 0, 0) / 4
    oracle = np.array([[0.0], [1.0], [2.0], [3.0], [4.0]])  # q = (1, 1, 1, 1) / 4
    assert klom(unlearned, oracle, bins=4)[0] == pytest.approx(0.75 * math.log(3), rel=1e-12)
    # The other way q has mass where p has none: KL = 1/4 ln(1/3) + 2 * 1/4 ln((1/4) / eps'), eps' renormalised.
    z = 1 + 2e-5
    expected = 0.25 * math.log((0.25 * z) / 0.75) + 0.25 * math.log(0.25 * z / 0.25) + 0.5 * math.log(0.25 * z / 1e-5)
    assert klom(oracle, unlearned, bins=4)[0] == pytest.approx(expected, rel=1e-12)


def test_klom_clips_margins_before_binning():
    unlearned = np.array([[-500.0], [0.0], [50.0], [1000.0]])
    clipped = np.clip(unlearned, -100, 100)
    oracle = np.array([[-100.0], [10.0], [60.0], [100.0]])
    assert klom(unlearned, oracle)[0] == pytest.approx(klom(clipped, oracle)[0], rel=1e-12)


def test_klom_matches_the_digitize_and_entropy_recipe_per_example():
    rng = np.random.default_rng(1)
    unlearned, oracle = rng.normal(0.5, 1, size=(30, 6)), rng.normal(0, 1.5, size=(40, 6))
    values = klom(unlearned, oracle)
    for n in range(6):
        p, q = unlearned[:, n], oracle[:, n]
        edges = np.linspace(min(p.min(), q.min()), max(p.max(), q.max()), 21)
        pc = np.bincount(np.digitize(p, edges), minlength=22)[1:21]
        qc = np.bincount(np.digitize(q, edges), minlength=22)[1:21]
        pp, qp = pc / pc.sum(), qc / qc.sum()
        assert values[n] == pytest.approx(stats.entropy(pp, np.where(pp > 0, np.maximum(qp, 1e-5), qp)), rel=1e-12)


def test_klom_is_nan_when_no_unlearned_sample_is_left_in_a_bin():
    unlearned = np.full((3, 1), 5.0)  # all at the top edge, so the code's histogram of p is empty
    oracle = np.array([[0.0], [1.0], [2.0]])
    assert np.isnan(klom(unlearned, oracle)[0])
    assert math.isnan(klom_summary(klom(unlearned, oracle))["p95"])
    assert np.isfinite(klom(unlearned, oracle, keep_top_edge=True)[0])


def test_klom_summary_is_the_95th_percentile_and_the_mean():
    values = np.arange(21.0)  # np.percentile(0..20, 95) = 19 with linear interpolation
    assert klom_summary(values) == {"p95": 19.0, "mean": 10.0}
