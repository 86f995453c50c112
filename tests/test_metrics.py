"""Evaluation metrics against closed-form answers, and the `unlearnkit evaluate` command end to end."""
from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from unlearnkit.artifacts import load_checkpoint, save_checkpoint
from unlearnkit.cli import app
from unlearnkit.config import TrainRecipe
from unlearnkit.data import load_dataset, make_split
from unlearnkit.errors import ConfigError
from unlearnkit.evaluation import (
    ATTACKS,
    GAP_METRICS,
    METRICS,
    Outputs,
    accuracy,
    avg_gap,
    evaluate,
    gap_metrics,
    js_divergence,
    kl_divergence,
    kl_per_sample,
    membership_rate_lr,
    membership_rate_svc,
    mia_entropy,
    mia_svc,
    parameter_distance,
    per_class_accuracy,
    runtime_efficiency,
    shannon_entropy,
    true_class_confidence,
    verification_error,
)
from unlearnkit.models import spec_for
from unlearnkit.pipeline import train
from unlearnkit.runtime import Runtime
from unlearnkit.unlearning.engine import unlearn

# ---------------------------------------------------------------------------------------------- divergences

def test_kl_of_a_distribution_with_itself_is_zero():
    p = torch.softmax(torch.randn(50, 7, generator=torch.Generator().manual_seed(0)), dim=1)
    assert kl_divergence(p, p) == pytest.approx(0.0, abs=1e-12)


def test_kl_matches_a_hand_computed_value():
    p = torch.tensor([[0.5, 0.5], [0.2, 0.8]], dtype=torch.float64)
    q = torch.tensor([[0.9, 0.1], [0.2, 0.8]], dtype=torch.float64)
    # Row 1: 0.5 ln(0.5/0.9) + 0.5 ln(0.5/0.1) = 0.5 ln(25/9); row 2: 0. Mean over the rows.
    assert kl_divergence(p, q) == pytest.approx(0.25 * math.log(25 / 9), rel=1e-9)
    assert kl_divergence(q, p) != pytest.approx(kl_divergence(p, q))  # KL is directed
    assert kl_per_sample(p, q).tolist() == pytest.approx([0.5 * math.log(25 / 9), 0.0], abs=1e-12)


def test_kl_guards_zero_probabilities_with_the_official_epsilon():
    p, q = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    assert kl_divergence(p, q) == pytest.approx(math.log(1 / 1e-20), rel=1e-9)


def test_js_is_symmetric_zero_on_identical_and_log2_on_disjoint():
    g = torch.Generator().manual_seed(1)
    p = torch.softmax(torch.randn(40, 5, generator=g), dim=1)
    q = torch.softmax(torch.randn(40, 5, generator=g), dim=1)
    assert js_divergence(p, q) == pytest.approx(js_divergence(q, p), rel=1e-12)
    assert js_divergence(p, p) == pytest.approx(0.0, abs=1e-12)
    assert 0 < js_divergence(p, q) < math.log(2)
    assert js_divergence(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])) == pytest.approx(math.log(2), rel=1e-9)


def test_divergences_reject_mismatched_shapes():
    with pytest.raises(ConfigError, match="one shape"):
        kl_divergence(torch.ones(3, 2) / 2, torch.ones(3, 4) / 4)


# ---------------------------------------------------------------------------------------------- accuracy

def test_accuracy_of_a_known_prediction_vector():
    labels = torch.tensor([0, 1, 1, 2])
    assert accuracy(torch.tensor([0, 1, 2, 2]), labels) == pytest.approx(75.0)
    assert accuracy(torch.tensor([0, 1, 1, 2]), labels) == pytest.approx(100.0)
    logits = torch.tensor([[5.0, 0, 0], [0, 5, 0], [5, 0, 0], [0, 0, 5]])  # argmax 0, 1, 0, 2
    assert accuracy(logits, labels) == pytest.approx(75.0)
    assert math.isnan(accuracy(torch.tensor([], dtype=torch.long), torch.tensor([], dtype=torch.long)))


def test_per_class_accuracy_and_absent_classes():
    found = per_class_accuracy(torch.tensor([0, 1, 2, 2]), torch.tensor([0, 1, 1, 2]), num_classes=4)
    assert found[:3] == pytest.approx([100.0, 50.0, 100.0])
    assert math.isnan(found[3])


# ---------------------------------------------------------------------------------------------- membership attacks

def test_entropy_and_confidence_features():
    logits = torch.tensor([[0.0, 0.0, 0.0, 0.0], [100.0, 0.0, 0.0, 0.0]])
    assert shannon_entropy(logits) == pytest.approx([math.log(4), 0.0], abs=1e-12)
    assert true_class_confidence(logits, torch.tensor([2, 0])) == pytest.approx([0.25, 1.0])


@pytest.mark.parametrize("attack", [membership_rate_lr, membership_rate_svc])
def test_attack_is_at_chance_when_members_and_non_members_look_alike(attack):
    rng = np.random.default_rng(0)

    def draw(n):  # one distribution for everyone
        return rng.gamma(2.0, 0.3, size=n)

    members, nonmembers = draw(1500), draw(1500)
    held_out_members, held_out_nonmembers = draw(1500), draw(1500)
    balanced_accuracy = (attack(members, nonmembers, held_out_members)
                         + 100 - attack(members, nonmembers, held_out_nonmembers)) / 2
    assert balanced_accuracy == pytest.approx(50.0, abs=4.0)


@pytest.mark.parametrize("attack", [membership_rate_lr, membership_rate_svc])
def test_attack_on_separable_features_is_exact(attack):
    rng = np.random.default_rng(1)
    members, nonmembers = rng.uniform(0.0, 0.1, 300), rng.uniform(1.0, 2.0, 300)
    assert attack(members, nonmembers, rng.uniform(0.0, 0.1, 50)) == 100.0
    assert attack(members, nonmembers, rng.uniform(1.0, 2.0, 50)) == 0.0


def _outputs(n: int, confident: bool, seed: int, classes: int = 5) -> Outputs:
    """Logits that are sharp on the true class (a member-like output) or flat (a non-member-like one)."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, classes, (n,), generator=g)
    logits = 0.1 * torch.randn(n, classes, generator=g)
    if confident:
        logits[torch.arange(n), labels] += 12.0 + torch.rand(n, generator=g)
    return Outputs(logits, labels)


@pytest.mark.parametrize("name", ["mia_entropy", "mia_entropy_scaled", "mia_svc", "mia_loss"])
def test_named_attacks_are_at_chance_when_outputs_do_not_depend_on_membership(name):
    attack = ATTACKS.get(name)

    def draw(n, seed):  # every set from one output distribution: logits of random sharpness
        g = torch.Generator().manual_seed(seed)
        labels = torch.randint(0, 5, (n,), generator=g)
        return Outputs(torch.randn(n, 5, generator=g) * 4 * torch.rand(n, 1, generator=g), labels)

    remain, test = draw(1500, 0), draw(1000, 1)
    balanced_accuracy = (attack(remain, test, draw(1000, 2)) + 100 - attack(remain, test, draw(1000, 3))) / 2
    assert balanced_accuracy == pytest.approx(50.0, abs=4.0)


@pytest.mark.parametrize("name", ["mia_entropy", "mia_entropy_scaled", "mia_svc", "mia_loss"])
def test_named_attacks_read_as_share_of_forget_set_called_member(name):
    attack = ATTACKS.get(name)
    remain, test = _outputs(400, True, 0), _outputs(200, False, 1)
    assert attack(remain, test, _outputs(60, True, 2)) == 100.0  # D_f still looks trained on
    assert attack(remain, test, _outputs(60, False, 3)) == 0.0   # D_f looks like unseen data


def test_svc_attack_is_seeded_and_its_shadow_picks():
    remain, test, forget = _outputs(300, True, 0), _outputs(100, False, 1), _outputs(80, False, 2)
    forget.logits[:40] = remain.logits[:40]  # half of D_f member-like
    forget.labels[:40] = remain.labels[:40]
    first = mia_svc(remain, test, forget, shadow="first")
    assert mia_svc(remain, test, forget, seed=3) == mia_svc(remain, test, forget, seed=3)
    assert first == pytest.approx(50.0, abs=5.0)
    with pytest.raises(ConfigError, match="shadow pick"):
        mia_svc(remain, test, forget, shadow="last")


def test_the_scaled_entropy_attack_reads_tiny_entropies_that_the_official_one_cannot():
    """Entropies of a model confident on everything (all below 2e-5): members lower than non-members. The official
    fit on raw entropies is its intercept alone and calls member-like D_f non-member; standardised, it is the same
    threshold rule as at any scale."""
    from unlearnkit.evaluation.membership import mia_entropy_scaled

    def sharp(n, margin_low, margin_high, seed):  # two classes, margin m: entropy about m·e^-m, tiny for m >= 12
        g = torch.Generator().manual_seed(seed)
        m = margin_low + (margin_high - margin_low) * torch.rand(n, generator=g, dtype=torch.float64)
        return Outputs(torch.stack([m, torch.zeros_like(m)], 1), torch.zeros(n, dtype=torch.long))

    remain, test = sharp(2000, 15.0, 16.0, 0), sharp(1000, 13.0, 14.0, 1)
    forget = sharp(300, 15.0, 16.0, 2)  # trained on, like D_r
    assert mia_entropy(remain, test, forget) == 0.0
    assert mia_entropy_scaled(remain, test, forget) == 100.0
    assert mia_entropy_scaled(remain, test, sharp(300, 13.0, 14.0, 3)) == 0.0


def test_loss_attack_threshold_is_youdens_j_on_known_losses():
    from unlearnkit.evaluation.membership import mia_loss

    def with_losses(losses):  # logits (-m, 0), label 0: the loss is softplus(m), so m = softplus^-1(loss)
        m = torch.log(torch.expm1(torch.tensor(losses, dtype=torch.float64)))
        return Outputs(torch.stack([-m, torch.zeros_like(m)], 1), torch.zeros(len(losses), dtype=torch.long))

    remain, test = with_losses([0.1, 0.2, 0.3, 0.4]), with_losses([0.35, 0.5, 0.6, 0.7])
    # Youden's J is largest (0.75) at t = 0.3: TPR 3/4, FPR 0; at 0.4 it is 1 - 1/4 = 0.75 too, and roc_curve's
    # first maximum (the stricter threshold, 0.3) is kept.
    assert mia_loss(remain, test, with_losses([0.05, 0.3, 0.31, 0.9])) == 50.0


def test_attack_registry_and_gap_metrics():
    assert set(ATTACKS.names()) == {"mia_entropy", "mia_entropy_scaled", "mia_svc", "mia_loss"}
    assert ATTACKS.get("mia_entropy") is mia_entropy
    assert GAP_METRICS == ("forget_acc", "remain_acc", "test_acc", "mia_entropy")
    assert gap_metrics("mia_svc")[-1] == "mia_svc"
    with pytest.raises(ConfigError, match="mia_entropy"):
        gap_metrics("mia_lira")
    assert {METRICS.get(k).goal for k in GAP_METRICS} == {"oracle"}
    assert METRICS.get("kl_forget").goal == "lower" and METRICS.get("speedup").goal == "higher"


# ---------------------------------------------------------------------------------------------- Avg.Gap, weights, cost

def test_avg_gap_of_hand_made_numbers():
    model = {"forget_acc": 90.0, "remain_acc": 99.0, "test_acc": 94.0, "mia_entropy": 70.0}
    oracle = {"forget_acc": 95.0, "remain_acc": 100.0, "test_acc": 95.0, "mia_entropy": 75.0}
    assert avg_gap(model, oracle) == pytest.approx((5 + 1 + 1 + 5) / 4)
    # SFR-on's own CIFAR-10 row (sfron.md §4.1): Avg.D 1.20.
    sfron = {"forget_acc": 96.58, "remain_acc": 99.88, "test_acc": 94.19, "mia_entropy": 72.26}
    rt = {"forget_acc": 95.62, "remain_acc": 100.00, "test_acc": 95.34, "mia_entropy": 74.84}
    assert round(avg_gap(sfron, rt), 2) == 1.20


def _linear(weight, bias) -> nn.Linear:
    layer = nn.Linear(2, 1)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([weight]))
        layer.bias.copy_(torch.tensor([bias]))
    return layer


def test_verification_error_of_hand_made_weights():
    model, oracle, original = _linear([1.0, 2.0], 0.0), _linear([1.0, 0.0], 0.0), _linear([4.0, 4.0], 0.0)
    # ||(0, 2, 0)|| = 2 and ||(3, 4, 0)|| = 5.
    found = verification_error(model, oracle, original)
    assert found["verification_error"] == pytest.approx(2.0)
    assert found["verification_error_rel"] == pytest.approx(2.0 / 5.0)
    assert found["notes"] == []
    assert parameter_distance(oracle, oracle) == 0.0


def test_verification_error_is_nan_with_a_note_for_other_architectures():
    found = verification_error(nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 1)), nn.Linear(2, 1))
    assert math.isnan(found["verification_error"]) and math.isnan(found["verification_error_rel"])
    assert any("differ" in note for note in found["notes"])


def test_runtime_efficiency_against_retraining():
    found = runtime_efficiency({"wall_time_s": 2.0, "sample_passes": 100}, {"wall_time_s": 20.0, "sample_passes": 1000})
    assert (found["rte_s"], found["speedup"], found["cost_ratio"]) == pytest.approx((2.0, 10.0, 0.1))
    missing = runtime_efficiency(None, {"wall_time_s": 20.0, "sample_passes": 1000})
    assert math.isnan(missing["rte_s"]) and math.isnan(missing["speedup"]) and missing["notes"]


# ---------------------------------------------------------------------------------------------- end to end

RECIPE = TrainRecipe(epochs=2, batch_size=64, lr=0.05)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Tiny digits MLPs: the original, oracles for two splits, and an FT-unlearned model saved like `forget` does."""
    root = tmp_path_factory.mktemp("store")
    runtime = Runtime.create("cpu", 1)
    data = load_dataset("digits")
    spec = spec_for("mlp", data)
    split = make_split("random:0.1", data, 0)
    original = train(data, spec, RECIPE, 0, None, runtime, root)
    oracle = train(data, spec, RECIPE, 0, split, runtime, root)
    other_oracle = train(data, spec, RECIPE, 0, make_split("class:3", data, 0), runtime, root)
    result = unlearn(original.load_model(), split, "ft", runtime=runtime, epochs=1)
    unlearned = save_checkpoint(root / "unlearned", result.model,
                                {**original.record, "kind": "unlearned", "split": split.describe(),
                                 "unlearning": result.record()}, split)
    return {"root": root, "data": data, "split": split, "original": original, "oracle": oracle,
            "other_oracle": other_oracle, "unlearned": unlearned, "runtime": runtime}


def _run(*args):
    result = CliRunner().invoke(app, ["evaluate", *map(str, args)])
    return result, result.stdout.strip().splitlines()


def test_evaluate_command_reports_every_metric(store):
    result, lines = _run(store["unlearned"].path, "--oracle", store["oracle"].path,
                         "--original", store["original"].path, "--json")
    assert result.exit_code == 0, result.output
    found = json.loads(lines[-1])
    for key in ("forget_acc", "remain_acc", "test_acc", "mia_entropy", "mia_svc", "avg_gap", "kl_forget",
                "js_forget", "verification_error", "verification_error_rel", "rte_s", "speedup", "cost_ratio",
                "per_class_test_acc"):
        assert found[key] is not None, key
    gaps = [abs(found[k] - found["oracle"][k]) for k in GAP_METRICS]
    assert found["avg_gap"] == pytest.approx(sum(gaps) / 4)
    recorded = store["unlearned"].record["unlearning"]
    assert found["rte_s"] == pytest.approx(recorded["wall_time_s"])
    assert found["speedup"] == pytest.approx(store["oracle"].record["wall_time_s"] / recorded["wall_time_s"])
    assert found["cost_ratio"] == pytest.approx(recorded["sample_passes"] / store["oracle"].record["sample_passes"])
    assert found["sizes"] == {"forget": 144, "remain": 1293, "test": 360}
    assert found["kl_forget"] > 0 and found["verification_error"] > 0
    assert len(found["per_class_test_acc"]) == 10


def test_evaluate_prints_a_readable_table(store):
    result, lines = _run(store["unlearned"].path, "--oracle", store["oracle"].path, "--mia", "mia_svc")
    assert result.exit_code == 0, result.output
    text = "\n".join(lines)
    assert "FA (%)" in text and "Avg.Gap (FA, RA, TA, MIA-svc)" in text and "per-class test accuracy" in text
    assert "no original model" in text  # the note explaining the missing relative verification error


def test_the_oracle_against_itself_has_no_gap(store):
    found = evaluate(store["oracle"].load_model(), store["oracle"].load_model(), store["split"], store["data"],
                     store["runtime"], oracle_record=store["oracle"].record)
    assert found["avg_gap"] == 0.0 and found["verification_error"] == 0.0
    assert found["kl_forget"] == pytest.approx(0.0, abs=1e-12) and found["js_forget"] == pytest.approx(0.0, abs=1e-12)
    assert math.isnan(found["rte_s"]) and any("no unlearning record" in n for n in found["notes"])


def _with_fingerprint(checkpoint, folder, fingerprint):
    copy = shutil.copytree(checkpoint.path, folder)
    record = json.loads((copy / "record.json").read_text())
    record["data"]["fingerprint"] = fingerprint
    (copy / "record.json").write_text(json.dumps(record))
    return load_checkpoint(copy)


@pytest.mark.parametrize("case", ["other split", "other data", "data changed", "no split", "missing", "unknown mia"])
def test_evaluate_rejects_mismatched_input(store, tmp_path, case):
    model, oracle, extra = store["unlearned"].path, store["oracle"].path, []
    if case == "other split":
        oracle, expected = store["other_oracle"].path, "use the oracle of the same split"
    elif case == "other data":
        oracle, expected = _with_fingerprint(store["oracle"], tmp_path / "o", "0123456789abcdef").path, "different data"
    elif case == "data changed":
        model = _with_fingerprint(store["unlearned"], tmp_path / "m", "0123456789abcdef").path
        oracle, expected = _with_fingerprint(store["oracle"], tmp_path / "o", "0123456789abcdef").path, "fingerprint"
    elif case == "no split":
        oracle, expected = store["original"].path, "is not an oracle"
    elif case == "missing":
        oracle, expected = tmp_path / "nowhere", "does not exist"
    else:
        extra, expected = ["--mia", "mia_lira"], "unknown membership attack"
    result, lines = _run(model, "--oracle", oracle, *extra, "--json")
    assert result.exit_code == 2
    assert expected in result.stderr
    assert expected in json.loads(lines[-1])["error"]
