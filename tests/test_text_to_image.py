"""Text-to-image concept erasure on diffusers' Stable Diffusion components: the captioned digits, the local
tokenizer, models from a config and from a local folder, every method on a tiny model, UCE's closed form,
the NudeNet metric and the bad inputs."""
from __future__ import annotations

import copy
import csv
from dataclasses import replace

import numpy as np
import pytest
import torch

pytest.importorskip("diffusers")
pytest.importorskip("transformers")

from unlearnkit.errors import ConfigError  # noqa: E402
from unlearnkit.runtime import Runtime  # noqa: E402
from unlearnkit.text_to_image.components import (  # noqa: E402
    ModelSpec,
    TextToImageModel,
    build_components,
    load_components,
    sd_shaped_spec,
)
from unlearnkit.text_to_image.data import (  # noqa: E402
    assign_styles,
    captioned_digits,
    concept_split,
    latent_dataset,
    stylise,
)
from unlearnkit.text_to_image.engine import remap_targets, sequential_erasure, unlearn_text_to_image  # noqa: E402
from unlearnkit.text_to_image.methods import TEXT_TO_IMAGE_METHODS  # noqa: E402
from unlearnkit.text_to_image.nudity import (  # noqa: E402
    DETECTOR,
    NUDE_CLASSES,
    nudity_counts,
    read_prompt_file,
)
from unlearnkit.text_to_image.parts import in_scope  # noqa: E402
from unlearnkit.text_to_image.prompts import (  # noqa: E402
    DIGITS,
    PROMPTS,
    STYLES,
    parse_concepts,
    prompt_digit,
    prompt_style,
    words,
)
from unlearnkit.text_to_image.sampling import partial_generation, sample  # noqa: E402
from unlearnkit.text_to_image.tokenizer import build_tokenizer  # noqa: E402
from unlearnkit.text_to_image.uce import uce_weights  # noqa: E402

TINY = ModelSpec(widths=(8, 16), cross_attention=(False, True), norm_groups=4, heads=1, text_width=16, max_length=8)


@pytest.fixture(scope="module")
def runtime() -> Runtime:
    return Runtime.create("cpu", 1)


@pytest.fixture(scope="module")
def full_data():
    return captioned_digits()


@pytest.fixture(scope="module")
def data(full_data):
    """Three training images per caption (90), so a method's step is milliseconds."""
    keep = torch.cat([torch.nonzero(full_data.train_labels == p).flatten()[:3] for p in range(len(PROMPTS))]).sort()
    return replace(full_data, name="captioned-mini", train_images=full_data.train_images[keep.values],
                   train_labels=full_data.train_labels[keep.values], _fingerprint=None)


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return TextToImageModel(build_components(TINY))


def snapshot(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def changed(before: dict, model) -> set[str]:
    return {n for n, p in model.named_parameters() if not torch.equal(before[n], p.detach())}


# --- the captioned digits ----------------------------------------------------------------------------------

def test_prompts_name_their_digit_and_style():
    assert len(PROMPTS) == len(DIGITS) * len(STYLES) == 30
    for p, prompt in enumerate(PROMPTS):
        assert prompt.split()[-1] == DIGITS[prompt_digit(p)]  # the digit is the last word (UCE's token)
        assert STYLES[prompt_style(p)] in prompt.split()
    assert PROMPTS[7 * 3 + 2] == "an inverted handwritten seven"
    assert [PROMPTS[p] for p in parse_concepts("seven")[0].prompts] == [
        "a thick handwritten seven", "a thin handwritten seven", "an inverted handwritten seven"]
    assert len(parse_concepts("thin")[0].prompts) == 10


def test_styles_are_real_deterministic_transforms(full_data):
    labels = torch.tensor([3] * 9 + [5] * 6)
    styles = assign_styles(labels)
    assert torch.equal(styles, assign_styles(labels))  # fixed per sample, no run seed
    assert torch.bincount(styles[:9]).tolist() == [3, 3, 3]  # balanced within a digit
    digit = torch.rand(1, 1, 8, 8).repeat(3, 1, 1, 1)
    thick, thin, inverted = stylise(digit, torch.tensor([0, 1, 2]))
    assert thick.sum() > digit[0].sum() > 0  # dilation adds ink
    assert thin.sum() < thick.sum() and thin.max() == pytest.approx(1.0)  # erosion, rescaled to a bright max
    assert inverted[0, 0, 0] == 1.0 and torch.allclose(inverted[0, 4:12, 4:12], 1 - digit[0, 0])
    assert full_data.image_shape == (1, 16, 16) and full_data.classes == list(PROMPTS)
    counts = torch.bincount(full_data.train_labels, minlength=30)
    assert counts.min() >= 45 and counts.sum() == 1437


def test_concept_split_holds_every_sample_of_the_concept(full_data):
    split = concept_split(full_data, "seven")
    digits = full_data.train_labels[split.forget] // 3
    assert (digits == 7).all() and len(split.forget) == int((full_data.train_labels // 3 == 7).sum())
    assert split.spec == "concept:seven" and split.forgotten_classes == (21, 22, 23)
    both = concept_split(full_data, "seven+thick")
    assert len(both.forget) > len(split.forget)


def test_remap_targets_skip_every_erased_concept():
    targets = remap_targets(parse_concepts("seven+eight"))
    assert {PROMPTS[k]: PROMPTS[v] for k, v in targets.items()}["a thin handwritten seven"] == \
        "a thin handwritten nine"
    assert set(remap_targets(parse_concepts("thick"), "null").values()) == {len(PROMPTS)}


def test_local_tokenizer_spells_each_word_as_one_token(tmp_path):
    from transformers import CLIPTokenizer

    tokenizer = build_tokenizer(words(), 8)
    ids = tokenizer("a thick handwritten seven", padding="max_length", max_length=8).input_ids
    assert len(ids) == 8 and ids[0] == tokenizer.bos_token_id and ids[5:] == [tokenizer.eos_token_id] * 3
    tokenizer.save_pretrained(tmp_path)
    again = CLIPTokenizer.from_pretrained(tmp_path, local_files_only=True)
    assert again("an inverted handwritten nine").input_ids == tokenizer("an inverted handwritten nine").input_ids
    assert len(tokenizer("zebra", add_special_tokens=False).input_ids) > 1  # other words fall back to bytes


# --- components: a model from a config, a local folder -------------------------------------------------------

def test_sd_shaped_tiny_model_from_config():
    from diffusers import AutoencoderKL, UNet2DConditionModel

    torch.manual_seed(0)
    components = build_components(sd_shaped_spec())
    assert isinstance(components.unet, UNet2DConditionModel) and isinstance(components.vae, AutoencoderKL)
    assert list(components.unet.config.down_block_types) == ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"]
    assert components.tokenizer.model_max_length == 77
    model = TextToImageModel(components)
    assert {n.split(".")[0] for n, _ in model.named_parameters()} == {"unet"}  # the engine sees the UNet only
    images = sample(model, ["a thick handwritten seven"] * 2, steps=2, guidance=3.0, seed=1)
    assert images.shape == (2, 3, 16, 16) and images.abs().max() <= 1  # latents 4x8x8, decoded by the VAE
    twin = copy.deepcopy(model)
    assert twin.text is model.text and twin.vae is model.vae and twin.unet is not model.unet


def test_save_pretrained_folder_reads_back_with_local_files_only(tmp_path):
    from diffusers import StableDiffusionPipeline

    torch.manual_seed(0)
    components = build_components(sd_shaped_spec())
    components.save(tmp_path / "sd")
    loaded = load_components(tmp_path / "sd")
    for a, b in zip(components.unet.state_dict().values(), loaded.unet.state_dict().values()):
        assert torch.equal(a, b)
    x, t = torch.randn(1, 4, 8, 8), torch.tensor([10])
    first, second = TextToImageModel(components), TextToImageModel(loaded)
    context = first.text.embed(["a thin handwritten two"])
    assert torch.allclose(first(x, t, context), second(x, t, second.text.embed(["a thin handwritten two"])), atol=1e-5)
    pipe = StableDiffusionPipeline.from_pretrained(tmp_path / "sd", local_files_only=True, safety_checker=None,
                                                   feature_extractor=None, image_encoder=None,
                                                   requires_safety_checker=False)
    assert pipe.unet.config.cross_attention_dim == 16 and pipe.vae is not None


def test_bad_model_dirs_are_one_line_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist") as missing:
        load_components(tmp_path / "nowhere")
    (tmp_path / "half" / "unet").mkdir(parents=True)
    with pytest.raises(ConfigError, match="lacks text_encoder/") as half:
        load_components(tmp_path / "half")
    for exc in (missing, half):
        assert "\n" not in str(exc.value)


def test_partial_generation_stops_at_its_timestep(tiny_model):
    context = tiny_model.text.embed(["a thick handwritten one"] * 3)
    null = tiny_model.text.embed([""])
    x, t = partial_generation(tiny_model, context, null, 10, 4, 3.0, torch.Generator().manual_seed(0))
    assert x.shape == (3, 1, 16, 16) and ((t >= 400) & (t < 500)).all()


# --- methods on the engine -------------------------------------------------------------------------------------

def test_scopes_follow_the_official_train_methods():
    assert in_scope("down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.weight", "xattn")
    assert not in_scope("down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_k.weight", "xattn")
    assert in_scope("down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_k.weight", "noxattn")
    for name in ("mid_block.attentions.0.transformer_blocks.0.attn2.to_v.weight", "time_embedding.linear_1.weight",
                 "conv_out.weight", "conv_norm_out.bias"):
        assert not in_scope(name, "noxattn")
    assert in_scope("up_blocks.0.attentions.1.transformer_blocks.0.attn2.to_v.weight", "xattn-kv")
    assert not in_scope("up_blocks.0.attentions.1.transformer_blocks.0.attn2.to_q.weight", "xattn-kv")


FAST = {"esd-x": {"epochs": 1, "batch_size": 9, "esd_ddim_steps": 4, "lr": 1e-3},
        "esd-u": {"epochs": 1, "batch_size": 9, "esd_ddim_steps": 4, "lr": 1e-3},
        "salun": {"epochs": 1, "batch_size": 48, "lr": 1e-3},
        "sfron": {"iters": 2, "batch_size": 8, "fisher_batch_size": 32, "lr": 1e-3},
        "sfron-code": {"iters": 2, "batch_size": 8, "lr": 1e-3},
        "fmn": {"epochs": 1, "batch_size": 5, "lr": 1e-2},
        "uce": {}}


@pytest.fixture(scope="module")
def sd_models(tmp_path_factory):
    """An SD-shaped model built from a config, and the same model read back from the diffusers folder its
    `save_pretrained` wrote: each with the captioned digits encoded by its VAE (the SD UNet works on latents)."""
    torch.manual_seed(0)
    components = build_components(sd_shaped_spec())
    folder = components.save(tmp_path_factory.mktemp("sd") / "model")
    return {"config": TextToImageModel(components), "folder": TextToImageModel(load_components(folder))}


@pytest.mark.parametrize("source", ["config", "folder"])
@pytest.mark.parametrize("method", sorted(FAST))
def test_each_method_runs_on_sd_shaped_latent_models(method, source, sd_models, data, runtime):
    model = copy.deepcopy(sd_models[source])
    latents = latent_dataset(data, model)
    assert latents.image_shape == model.sample_shape == (4, 8, 8)
    before = snapshot(model)
    result = unlearn_text_to_image(model, "seven", method, data=latents, runtime=runtime, **FAST[method])
    moved = changed(before, model)
    assert moved and all(torch.isfinite(p).all() for p in model.parameters())
    assert result.details["concepts"] == ["seven"]
    images = sample(model, ["a thick handwritten seven"], steps=2, guidance=3.0, seed=1)
    assert images.shape == (1, 3, 16, 16) and torch.isfinite(images).all()


@pytest.mark.parametrize("method", sorted(FAST))
def test_each_method_runs_and_changes_what_it_should(method, tiny_model, data, runtime):
    model = copy.deepcopy(tiny_model)
    before = snapshot(model)
    result = unlearn_text_to_image(model, "seven", method, data=data, runtime=runtime, **FAST[method])
    moved = changed(before, model)
    assert moved and all(p.requires_grad for p in model.parameters())  # the scope is restored
    if method == "esd-x":
        assert all(".attn2." in n for n in moved)
    elif method == "esd-u":
        assert not any(".attn2." in n or "time_embedding" in n or "conv_out" in n for n in moved)
    elif method == "uce":
        assert moved == {n for n in before if ".attn2.to_k." in n or ".attn2.to_v." in n}
        assert result.details["updates"] == 0
    elif method == "sfron":
        assert 0 < result.details["mask_density"] < 1
    if method != "uce":
        assert result.details["updates"] >= 1


def test_fmn_lowers_the_attention_on_the_concept_tokens(tiny_model, data, runtime):
    from unlearnkit.text_to_image.components import cross_attention_layers
    from unlearnkit.text_to_image.parts import AttentionResteer, _Recorder

    def concept_attention(model) -> float:
        store = {"positions": None, "probs": []}
        layers = cross_attention_layers(model)
        saved = {n: m.processor for n, m in layers.items()}
        for m in layers.values():
            m.set_processor(_Recorder(store))
        prompt = "a thick handwritten seven"
        store["positions"] = model.text.positions(prompt, "seven", pooler=False)[None]
        with torch.no_grad():
            model(torch.randn(1, 1, 16, 16, generator=torch.Generator().manual_seed(0)), torch.tensor([500]),
                  model.text.embed([prompt]))
        for n, m in layers.items():
            m.set_processor(saved[n])
        return float(torch.cat(store["probs"]).sum())

    assert AttentionResteer.label
    model = copy.deepcopy(tiny_model)
    start = concept_attention(model)
    unlearn_text_to_image(model, "seven", "fmn", data=data, runtime=runtime, epochs=3, batch_size=3, lr=3e-2)
    assert concept_attention(model) < start


def test_multi_and_sequential_erasure_run(tiny_model, data, runtime):
    model = copy.deepcopy(tiny_model)
    result = unlearn_text_to_image(model, "seven+three", "uce", data=data, runtime=runtime)
    assert result.details["concepts"] == ["seven", "three"]
    results = sequential_erasure(copy.deepcopy(tiny_model), ["seven", "three"], "esd-x", data=data, runtime=runtime,
                                 **FAST["esd-x"])
    assert [r.details["concepts"] for r in results] == [["seven"], ["three"]]


def test_uce_closed_form_matches_numpy():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(5, 4))
    c_e, c_g, c_p = rng.normal(size=(2, 4)), rng.normal(size=(2, 4)), rng.normal(size=(3, 4))
    lamb, s_e, s_p = 0.5, 1.5, 0.7
    mat1 = lamb * w + s_e * sum(np.outer(w @ g, c) for g, c in zip(c_g, c_e)) + s_p * sum(np.outer(w @ c, c)
                                                                                          for c in c_p)
    mat2 = lamb * np.eye(4) + s_e * sum(np.outer(c, c) for c in c_e) + s_p * sum(np.outer(c, c) for c in c_p)
    expected = mat1 @ np.linalg.inv(mat2)
    got = uce_weights(torch.tensor(w), torch.tensor(c_e), torch.tensor(c_g), torch.tensor(c_p), lamb, s_e, s_p)
    assert np.allclose(got.numpy(), expected)
    # with a strong preservation term, preserved inputs keep their outputs
    kept = uce_weights(torch.tensor(w), torch.tensor(c_e[:1]), torch.tensor(c_g[:1]), torch.tensor(c_p), 1e-6, 1.0,
                       1.0)
    assert np.allclose(kept.numpy() @ c_p.T, w @ c_p.T, atol=1e-4)


def test_bad_inputs_are_one_line_config_errors(tiny_model, data, runtime, tmp_path):
    cases = [lambda: parse_concepts("seventeen"), lambda: parse_concepts(""),
             lambda: unlearn_text_to_image(copy.deepcopy(tiny_model), "seven", "nope", data=data, runtime=runtime),
             lambda: unlearn_text_to_image(copy.deepcopy(tiny_model), "seven", "esd-x", data=data, runtime=runtime,
                                           train_method="everything"),
             lambda: read_prompt_file(tmp_path / "missing.csv")]
    (tmp_path / "noprompt.csv").write_text("text,seed\nhello,1\n")
    cases.append(lambda: read_prompt_file(tmp_path / "noprompt.csv"))
    for case in cases:
        with pytest.raises(ConfigError) as exc:
            case()
        assert "\n" not in str(exc.value)
    assert "no 'prompt' column" in str(pytest.raises(ConfigError, read_prompt_file, tmp_path / "noprompt.csv").value)


def test_registry_declares_every_method_without_calibration():
    assert set(TEXT_TO_IMAGE_METHODS.names()) == {"esd-x", "esd-u", "salun", "sfron", "sfron-code", "uce", "fmn"}
    for _, method in TEXT_TO_IMAGE_METHODS.items():
        params = method.parameters()
        assert params.get("calibrate", False) is False
        assert "cond_drop_prob" in params and "fisher_guidance" in params


# --- nudity: prompt files and the NudeNet metric -----------------------------------------------------------------

def test_prompt_file_reads_i2p_columns(tmp_path):
    path = tmp_path / "i2p.csv"
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["case_number", "prompt", "evaluation_seed", "evaluation_guidance"])
        writer.writerow([0, "a photo of a person", 42, 7.5])
        writer.writerow([1, "a painting", "", ""])
    rows = read_prompt_file(path)
    assert [(r.prompt, r.seed, r.guidance, r.case) for r in rows] == [("a photo of a person", 42, 7.5, 0),
                                                                      ("a painting", None, None, 1)]


class StandIn:
    """NudeNet's interface: detect(image) -> [{'class', 'score', 'box'}]; bright images are 'nude'."""

    def __init__(self):
        self.seen = []

    def detect(self, image):
        self.seen.append(image)
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[-1] == 3
        if image.mean() > 127:
            return [{"class": "FEMALE_BREAST_EXPOSED", "score": 0.9, "box": [0, 0, 4, 4]},
                    {"class": "FACE_FEMALE", "score": 0.99, "box": [0, 0, 4, 4]}]
        return [{"class": "BELLY_EXPOSED", "score": 0.5, "box": [0, 0, 4, 4]}]  # under the threshold


def test_nudity_metric_plumbing_with_a_stand_in_detector():
    images = torch.cat([torch.ones(2, 3, 8, 8), -torch.ones(3, 3, 8, 8)])
    detector = StandIn()
    result = nudity_counts(images, detector)
    assert len(detector.seen) == 5
    assert result["nude_images"] == 2 and result["nudity_rate"] == pytest.approx(40.0)
    assert result["per_class"]["FEMALE_BREAST_EXPOSED"] == 2 and result["per_class"]["BELLY_EXPOSED"] == 0
    assert "FACE_FEMALE" not in result["per_class"]
    assert result["detector"] == {**DETECTOR, "classes": list(NUDE_CLASSES)} and DETECTOR["threshold"] == 0.6


def test_nudenet_detector_loads_and_scores_an_image():
    pytest.importorskip("nudenet", reason="nudenet is an optional extra (pip install nudenet)")
    from unlearnkit.text_to_image.nudity import load_detector

    detector = load_detector()
    image = np.full((64, 64, 3), 128, dtype=np.uint8)
    detections = detector.detect(image)
    assert isinstance(detections, list)
    assert all({"class", "score", "box"} <= set(d) for d in detections)
    assert nudity_counts([torch.zeros(3, 64, 64)], detector)["images"] == 1


def test_the_cli_bench_writes_the_common_tables_with_the_reference_rows_and_resumes(monkeypatch, tmp_path):
    import json
    from pathlib import Path

    from typer.testing import CliRunner

    from unlearnkit.cli import app
    from unlearnkit.config import TrainRecipe
    from unlearnkit.generation import metrics
    from unlearnkit.text_to_image import bench

    monkeypatch.setattr(metrics, "CLASSIFIER_RECIPE", TrainRecipe(epochs=1, batch_size=64, lr=0.05, augment=False))
    monkeypatch.setattr(bench, "QUICK_RECIPE", {"steps": 3, "batch_size": 16})
    monkeypatch.setattr(bench, "QUICK_BUDGET", {"forget_per_prompt": 2, "retain_per_prompt": 1, "steps": 2})
    monkeypatch.setattr(bench, "QUICK_METHODS", {"sfron": {"iters": 1, "fisher_batch_size": 64}})
    monkeypatch.setattr(bench, "SCENARIO_METHODS", ["uce"])
    command = ["bench", "--task", "text-to-image", "--quick", "--methods", "sfron,uce", "--out", str(tmp_path / "out"),
               "--store", str(tmp_path / "store"), "--json"]
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout.strip().splitlines()[-1])
    with open(out["csv"]) as f:
        cells = [(row["scenario"], row["method"]) for row in csv.DictReader(f)]
    assert cells == [("text-to-image-seven", m) for m in ("Original", "RT (oracle)", "sfron", "uce")] + [
        (f"text-to-image-seven+three-{mode}", m) for mode in ("multi", "sequential") for m in ("Original", "uce")]
    rows = {row["method"]: row for row in out["tables"]["text-to-image-seven"]}
    assert rows["RT (oracle)"]["avg_gap"] == 0 and rows["RT (oracle)"]["kl_forget"] == pytest.approx(0, abs=1e-9)
    for row in rows.values():
        assert 0 <= row["forget_acc"] <= 100 and 0 <= row["remain_acc"] <= 100 and row["avg_gap"] >= 0
    assert rows["Original"]["cost_ratio"] == 0 and rows["sfron"]["cost_ratio"] > 0
    assert out["tables"]["text-to-image-seven+three-multi"][1]["avg_gap"] is None  # no oracle of both concepts
    assert {"text-to-image-seven/sfron", "text-to-image-seven+three-sequential/uce"} <= set(out["grids"])
    table = Path(out["markdown"]).read_text()
    assert "| method | FA | RA | FID* ↓ | alignment | neighbours % | Avg.Gap ↓ |" in table
    assert "forget seven %" in table and "NOT Inception FID" in table
    assert Path(out["report"]).read_text().count("data:image/png;base64,") >= 8
    (tmp_path / "out" / "cells" / "text-to-image-seven" / "0" / "uce.json").unlink()
    monkeypatch.setattr(bench, "unlearn_text_to_image", _counting(bench.unlearn_text_to_image, calls := []))
    again = CliRunner().invoke(app, command)
    assert again.exit_code == 0, again.output
    assert calls == ["uce"]  # every other cell was found
    figures = ("forget_acc", "remain_acc", "fid", "avg_gap", "kl_forget")  # the same; the recomputed RTE is not
    resumed = json.loads(again.stdout.strip().splitlines()[-1])["tables"]
    assert all([{k: r[k] for k in figures} for r in resumed[s]] == [{k: r[k] for k in figures} for r in rows]
               for s, rows in out["tables"].items())
    result = CliRunner().invoke(app, ["bench", "--task", "text-to-image", "--concept", "eleven",
                                      "--store", str(tmp_path / "store")])
    assert result.exit_code == 2 and "eleven" in result.output


def _counting(fn, calls: list):
    def counted(model, concepts, method, **kwargs):
        calls.append(method)
        return fn(model, concepts, method, **kwargs)

    return counted


@pytest.mark.parametrize("method, keep", [("esd-x", []), ("uce", []), ("sfron", ["a photo"]), ("fmn", [])])
def test_a_free_text_concept_is_erased_from_a_local_sd_folder(method, keep, tmp_path, runtime):
    import json

    from unlearnkit.text_to_image.erase import erase_folder

    torch.manual_seed(0)
    folder = build_components(sd_shaped_spec()).save(tmp_path / "sd")
    fast = {"esd-x": {"epochs": 1, "esd_ddim_steps": 4}, "uce": {}, "fmn": {"epochs": 1},
            "sfron": {"iters": 2, "fisher_batch_size": 8}}[method]
    out = erase_folder(folder, tmp_path / "erased", "nudity", method, prompts=["a nude person"], keep=keep,
                       anchor="a person wearing clothes", per_prompt=2, steps=2, runtime=runtime, **fast)
    erased = load_components(out["model_dir"])
    before = load_components(folder)
    moved = [n for (n, a), b in zip(before.unet.state_dict().items(), erased.unet.state_dict().values())
             if not torch.equal(a, b)]
    assert moved and all(torch.isfinite(p).all() for p in erased.unet.parameters())
    if method in ("esd-x", "uce"):
        assert all(".attn2." in n for n in moved)
    record = json.loads((tmp_path / "erased" / "erasure.json").read_text())
    assert record["concept"] == "nudity" and record["unlearning"]["method"] == method
    with pytest.raises(ConfigError, match="exists"):
        erase_folder(folder, tmp_path / "erased", "nudity", method, runtime=runtime)


def test_free_text_erasure_refuses_what_it_cannot_do(tmp_path, runtime):
    from unlearnkit.text_to_image.erase import erase_folder

    folder = build_components(sd_shaped_spec()).save(tmp_path / "sd")
    with pytest.raises(ConfigError, match="give the prompts to keep"):
        erase_folder(folder, tmp_path / "out", "nudity", "salun", runtime=runtime)
    with pytest.raises(ConfigError, match="does not exist"):
        erase_folder(tmp_path / "nowhere", tmp_path / "out", "nudity", "esd-x", runtime=runtime)
    assert not (tmp_path / "out").exists()


def test_the_erase_command_takes_an_i2p_prompt_file(tmp_path):
    import json

    from typer.testing import CliRunner

    from unlearnkit.cli import app

    torch.manual_seed(0)
    folder = build_components(sd_shaped_spec()).save(tmp_path / "sd")
    (tmp_path / "i2p.csv").write_text("prompt,evaluation_seed\na nude person,1\na naked body,2\n")
    args = ["erase", "--model-dir", str(folder), "--concept", "nudity", "--prompt-file", str(tmp_path / "i2p.csv"),
            "--method", "esd-x", "--out", str(tmp_path / "erased"), "--per-prompt", "1", "--steps", "2",
            "--set", "epochs=1", "--set", "esd_ddim_steps=4", "--threads", "1", "--json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["concept"] == "nudity" and load_components(out["model_dir"]).unet is not None
    record = json.loads((tmp_path / "erased" / "erasure.json").read_text())
    assert record["options"]["prompts"] == ["a nude person", "a naked body"]
    result = CliRunner().invoke(app, [*args[:-1], "--method", "magic"])
    assert result.exit_code == 2 and "unknown text-to-image method 'magic'" in result.output


def test_a_stored_model_whose_files_changed_is_trained_again(data, runtime, tmp_path):
    from unlearnkit.text_to_image.training import TextToImageRecipe, damage, train_text_to_image

    recipe = TextToImageRecipe(steps=2, batch_size=8)
    folder = train_text_to_image(data, TINY, recipe, seed=0, runtime=runtime, store=tmp_path)
    assert train_text_to_image(data, TINY, recipe, seed=0, runtime=runtime, store=tmp_path) == folder
    weights = next(folder.glob("unet/*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:-8] + bytes(8))  # damaged on disk, its record kept
    with pytest.warns(UserWarning, match="its files are not those its record.json was written for"):
        again = train_text_to_image(data, TINY, recipe, seed=0, runtime=runtime, store=tmp_path)
    assert again == folder and damage(folder) is None  # retrained and rewritten whole
