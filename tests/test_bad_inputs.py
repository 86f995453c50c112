"""Every error a user can cause is one line, exit code 2 (or an UnlearnkitError from the API), no traceback,
and nothing written: a new user's mistakes, through the command line and the Python API."""
import json
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import unlearnkit as uk
from unlearnkit.cli import app
from unlearnkit.errors import UnlearnkitError

runner = CliRunner()
FAST = ["--epochs", "2", "--set", "batch_size=64"]


def tree(path: Path) -> list[tuple[str, int]]:
    """Every file and folder under `path` with its size: what 'the store is unchanged' compares."""
    if not path.exists():
        return []
    return sorted((str(p.relative_to(path)), p.stat().st_size if p.is_file() else -1) for p in path.rglob("*"))


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """A store holding a quickly trained original digits CNN and its oracle for class 3."""
    store = tmp_path_factory.mktemp("stored")
    env = {"UNLEARNKIT_STORE": str(store)}
    original = runner.invoke(app, ["train", *FAST, "--json"], env=env)
    oracle = runner.invoke(app, ["retrain", "--forget", "class:3", *FAST, "--json"], env=env)
    assert original.exit_code == 0 and oracle.exit_code == 0, original.output + oracle.output
    paths = {k: json.loads(r.stdout.strip().splitlines()[-1])["checkpoint"] for k, r in
             (("original", original), ("oracle", oracle))}
    return store, paths


@pytest.fixture(scope="module")
def files(tmp_path_factory, stored):
    """Bad files a user might point the tool at."""
    folder = tmp_path_factory.mktemp("files")
    (folder / "plain.txt").write_text("not a folder")
    (folder / "bad.yaml").write_text("model: [cnn\nseed: 2\n")
    (folder / "list.yaml").write_text("- 1\n- 2\n")
    (folder / "conf.d").mkdir()
    (folder / "out_of_range.txt").write_text("0 1 5000")
    (folder / "duplicated.txt").write_text("0 1 1")
    (folder / "fractional.txt").write_text("0 1.5")
    one = folder / "one_image" / "cat"
    one.mkdir(parents=True)
    from PIL import Image

    Image.new("RGB", (8, 8)).save(one / "a.png")
    crafted = folder / "cifar"
    crafted.mkdir()
    rng = np.random.default_rng(0)
    batch = {b"data": rng.integers(0, 255, (2, 3072), dtype=np.uint8), b"labels": [0, 1]}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["batches.meta"]:
        pickle.dump(batch, open(crafted / name, "wb"))
    (crafted / "test_batch").write_bytes(pickle.dumps(Exploit(folder / "pwned")))
    store, paths = stored
    broken = folder / "broken_weights"
    shutil.copytree(paths["original"], broken)
    (broken / "model.safetensors").write_bytes(b"junk")
    no_record = folder / "broken_record"
    shutil.copytree(paths["original"], no_record)
    (no_record / "record.json").write_text("{not json")
    bench = {
        "typo": "scenarios:\n  - name: a\n    forget: class:3\n    forgett: 1\n",
        "twice": "scenarios:\n  - {name: a, forget: class:3}\n  - {name: a, forget: class:4}\n",
        "bad_hp": "scenarios:\n  - name: a\n    forget: class:3\n    hyperparameters: {sfron: {iters: -1}}\n",
        "no_root": "scenarios:\n  - {name: a, data: mnist, root: /nonexistent/mnist, forget: class:3}\n",
        "bad_spec": "scenarios:\n  - {name: a, forget: 'class:99'}\n",
        "no_seeds": "seeds: []\nscenarios:\n  - {name: a, forget: class:3}\n",
        "no_scenarios": "scenarios: []\n",
    }
    for name, text in bench.items():
        (folder / f"bench_{name}.yaml").write_text(text)
    configs = {"recipe_int": "recipe: 5\n", "seed_text": "seed: abc\n", "model_list": "model: [a]\n",
               "model_options_int": "model_options: 3\n", "hp_int": "hyperparameters: 7\n", "epochs": "epochs: 3\n",
               "typo": "epochz: 3\n", "flat_hp": "budget: 0.1\nmethod: ft\n", "seed_negative": "seed: -1\n"}
    for name, text in configs.items():
        (folder / f"conf_{name}.yaml").write_text(text)
    np.save(folder / "two_d.npy", np.arange(10).reshape(2, 5))
    (folder / "garbage.npy").write_text("0 1 2")
    return folder


class Exploit:
    """Unpickled by a plain pickle.load, this would create a file."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return os.system, (f"touch {self.path}",)


def _cli_cases():
    """(id, args with {placeholders}, expected part of the message, env)."""
    f = "{files}"
    return [
        ("unknown dataset", ["train", "--data", "imagenet"], "unknown dataset 'imagenet'", None),
        ("unknown model", ["train", "--model", "vgg"], "unknown model 'vgg'", None),
        ("missing root folder", ["train", "--data", "mnist", "--root", "/nonexistent/mnist"], "does not exist", None),
        ("no root", ["train", "--data", "mnist"], "pass its path with --root", None),
        ("root is a file", ["train", "--data", "mnist", "--root", f"{f}/plain.txt"], "does not exist", None),
        ("negative epochs via --set", ["train", "--set", "epochs=-1"], "invalid training recipe", None),
        ("zero epochs", ["train", "--epochs", "0"], "epochs: Input should be greater than 0", None),
        ("zero lr", ["train", "--lr", "0"], "lr: Input should be greater than 0", None),
        ("negative lr", ["train", "--lr", "-1"], "lr: Input should be greater than 0", None),
        ("infinite lr", ["train", "--lr", "inf"], "lr: Input should be a finite number", None),
        ("zero batch", ["train", "--batch-size", "0"], "batch_size", None),
        ("diverging lr", ["train", "--lr", "1e6", "--epochs", "2"], "diverged", None),
        ("lenet5 on 8x8 digits", ["train", "--model", "lenet5"], "cannot take the 1x8x8 images", None),
        ("unknown device", ["train", "--device", "tpu"], "unknown device 'tpu'", None),
        ("cuda without a GPU", ["train", "--device", "cuda"], "CUDA is not available", None),
        ("zero threads", ["train", "--threads", "0"], "threads must be an integer >= 1", None),
        ("threads not a number", ["train", "--threads", "abc"], "Invalid value for '--threads'", None),
        ("seed not a number", ["train", "--seed", "abc"], "Invalid value for '--seed'", None),
        ("unknown flag", ["train", "--epochz", "3"], "No such option: --epochz", None),
        ("unknown command", ["trian"], "No such command 'trian'", None),
        ("missing config", ["train", "--config", f"{f}/missing.yaml"], "does not exist", None),
        ("config is a folder", ["train", "--config", f"{f}/conf.d"], "is a folder, not a YAML file", None),
        ("config not YAML", ["train", "--config", f"{f}/bad.yaml"], "is not valid YAML", None),
        ("config not a mapping", ["train", "--config", f"{f}/list.yaml"], "must hold a mapping", None),
        ("--set without =", ["train", "--set", "epochs"], "expected key=value", None),
        ("unknown optimizer", ["train", "--set", "optimizer=rmsprop"], "optimizer: Input should be", None),
        ("unknown schedule", ["train", "--set", "schedule=weird"], "schedule: Input should be", None),
        ("momentum above 1", ["train", "--set", "momentum=1.5"], "momentum: Input should be less than 1", None),
        ("unknown recipe key", ["train", "--set", "epoch=3"], "unknown training recipe option(s) ['epoch']", None),
        ("store is a file", ["train", "--store", f"{f}/plain.txt"], "must be a folder, but it is a file", None),
        ("store under a file", ["train", "--store", f"{f}/plain.txt/store"], "is a file", None),
        ("read-only store", ["train", "--store", "/sys/unlearnkit-store"], "is not writable", None),
        ("unknown task", ["train", "--task", "nosuch"], "unknown task 'nosuch'; expected one of: classification",
         None),
        ("bad UNLEARNKIT_THREADS", ["train"], "UNLEARNKIT_THREADS must be a whole number",
         {"UNLEARNKIT_THREADS": "abc"}),
        ("imagefolder of one image", ["train", "--data", "imagefolder", "--root", f"{f}/one_image"],
         "too few to split", None),
        ("crafted CIFAR batch", ["train", "--data", "cifar10", "--root", f"{f}/cifar"], "refused", None),
        ("retrain without --forget", ["retrain"], "retrain needs --forget", None),
        ("random fraction above 1", ["retrain", "--forget", "random:1.2"], "must be in (0, 1), got 1.2", None),
        ("random fraction not a number", ["retrain", "--forget", "random:abc"], "must be a number", None),
        ("class out of range", ["retrain", "--forget", "class:12"], "class 12 does not exist", None),
        ("every class", ["retrain", "--forget", "class:0,1,2,3,4,5,6,7,8,9"], "remain set is empty", None),
        ("class listed twice", ["retrain", "--forget", "class:3,3"], "listed twice", None),
        ("empty class spec", ["retrain", "--forget", "class:"], "is malformed", None),
        ("unknown spec kind", ["retrain", "--forget", "half"], "is malformed", None),
        ("missing indices file", ["retrain", "--forget", "indices:/nonexistent.txt"], "does not exist", None),
        ("indices out of range", ["retrain", "--forget", f"indices:{f}/out_of_range.txt"], "out of range", None),
        ("duplicated indices", ["retrain", "--forget", f"indices:{f}/duplicated.txt"], "duplicated", None),
        ("fractional indices", ["retrain", "--forget", f"indices:{f}/fractional.txt"], "must hold integers", None),
        ("missing checkpoint", ["forget", "--model", "/nonexistent/ckpt", "--forget", "class:3"], "does not exist",
         None),
        ("forget from an oracle", ["forget", "--model", "{oracle}", "--forget", "class:3"],
         "unlearning starts from an original model", None),
        ("unknown method", ["forget", "--model", "{original}", "--method", "magic", "--forget", "class:3"],
         "unknown method 'magic'", None),
        ("unknown hyperparameter", ["forget", "--model", "{original}", "--forget", "class:3", "--set", "epohcs=2"],
         "has no hyperparameter(s) ['epohcs']", None),
        ("negative iterations", ["forget", "--model", "{original}", "--forget", "class:3", "--set", "iters=-5"],
         "iters: Input should be greater than or equal to 1", None),
        ("negative method lr", ["forget", "--model", "{original}", "--forget", "class:3", "--set", "lr=-1"],
         "lr: Input should be greater than 0", None),
        ("unknown lr schedule", ["forget", "--model", "{original}", "--forget", "class:3", "--set",
                                 "lr_schedule=weird"], "lr_schedule: Input should be", None),
        ("text for a number", ["forget", "--model", "{original}", "--forget", "class:3", "--set", "gamma=abc"],
         "gamma: Input should be a valid number", None),
        ("flag for a number", ["forget", "--model", "{original}", "--forget", "class:3", "--set", "alpha=true"],
         "alpha must be a number", None),
        ("mask ratio above 1", ["forget", "--model", "{original}", "--method", "salun", "--forget", "class:3", "--set",
                                "mask_ratio=2"], "mask_ratio: Input should be less than or equal to 1", None),
        ("zero forget fraction", ["forget", "--model", "{original}", "--forget", "random:0"], "must be in (0, 1)",
         None),
        ("corrupt weights", ["forget", "--model", f"{f}/broken_weights", "--forget", "class:3"],
         "corrupt or not safetensors", None),
        ("corrupt record", ["forget", "--model", f"{f}/broken_record", "--forget", "class:3"], "is corrupt", None),
        ("forget into a read-only store", ["forget", "--model", "{original}", "--forget", "class:3", "--store",
                                           "/sys/unlearnkit-store"], "is not writable", None),
        ("forget into a file", ["forget", "--model", "{original}", "--forget", "class:3", "--store",
                                f"{f}/plain.txt"], "is a file", None),
        ("missing oracle", ["evaluate", "{original}", "--oracle", "/nonexistent/oracle"], "does not exist", None),
        ("oracle without a split", ["evaluate", "{original}", "--oracle", "{original}"], "is not an oracle", None),
        ("an oracle as the original", ["evaluate", "{original}", "--oracle", "{oracle}", "--original", "{oracle}"],
         "not an original one", None),
        ("unknown attack", ["evaluate", "{original}", "--oracle", "{oracle}", "--mia", "lira"],
         "unknown membership attack 'lira'", None),
        ("negative attack seed", ["evaluate", "{original}", "--oracle", "{oracle}", "--seed", "-1"],
         "--seed must be >= 0", None),
        ("seeds not numbers", ["bench", "--seeds", "abc"], "--seeds takes comma-separated whole numbers", None),
        ("no seeds", ["bench", "--seeds", ","], "--seeds names no seed", None),
        ("seed twice", ["bench", "--seeds", "1,1"], "a seed is listed twice in --seeds: [1, 1]", None),
        ("bench task unknown", ["bench", "--task", "nosuch"], "unknown task 'nosuch'", None),
        ("bench unknown method", ["bench", "--methods", "magic"], "unknown method 'magic'", None),
        ("bench no method", ["bench", "--methods", ","], "--methods names nothing", None),
        ("bench unknown scenario", ["bench", "--only", "nosuch"], "unknown scenario(s) ['nosuch']", None),
        ("bench file missing", ["bench", "--scenarios", f"{f}/missing.yaml"], "does not exist", None),
        ("bench file typo", ["bench", "--scenarios", f"{f}/bench_typo.yaml"], "forgett", None),
        ("bench names twice", ["bench", "--scenarios", f"{f}/bench_twice.yaml"], "names must be unique", None),
        ("bench of no scenario", ["bench", "--scenarios", f"{f}/bench_no_scenarios.yaml"],
         "at least one scenario is needed", None),
        ("bench bad hyperparameter", ["bench", "--scenarios", f"{f}/bench_bad_hp.yaml"],
         "iters: Input should be greater than or equal to 1", None),
        ("bench data missing", ["bench", "--scenarios", f"{f}/bench_no_root.yaml"], "does not exist", None),
        ("bench bad forget spec", ["bench", "--scenarios", f"{f}/bench_bad_spec.yaml"], "class 99 does not exist",
         None),
        ("bench empty seeds", ["bench", "--scenarios", f"{f}/bench_no_seeds.yaml"], "at least one seed", None),
        ("bench into a file", ["bench", "--store", f"{f}/plain.txt"], "is a file", None),
        ("tune on a reported seed", ["tune", "--seeds", "0", "--methods", "ft"], "among the bench's reported seeds",
         None),
        ("tune no trials", ["tune", "--max-trials", "0"], "--max-trials must be at least 1", None),
        ("tune negative budget", ["tune", "--max-cost", "-1"], "--max-cost must be > 0", None),
        ("tune unknown method", ["tune", "--methods", "magic"], "unknown method 'magic'", None),
        ("methods unknown name", ["methods", "magic"], "unknown method 'magic'", None),
        ("bench unknown task", ["bench", "--task", "nosuch"], "expected one of: classification, generation, "
         "text-to-image", None),
        ("tune a domain without tuning", ["tune", "--task", "text-to-image"], "`tune --task text-to-image` is not "
         "available", None),
        ("forget under another domain", ["forget", "--model", "{original}", "--forget", "class:3", "--task",
                                         "generation"], "is a classification model, not generation", None),
        ("generation bench with a scenario file", ["bench", "--task", "generation", "--scenarios",
                                                   f"{f}/bench_no_seeds.yaml"], "not read with --task generation",
         None),
        ("methods of an unknown task", ["methods", "--task", "video"], "unknown task 'video'", None),
        ("config recipe not a mapping", ["train", "--config", f"{f}/conf_recipe_int.yaml"],
         "'recipe' must be a mapping", None),
        ("config seed not a number", ["train", "--config", f"{f}/conf_seed_text.yaml"],
         "'seed' must be a whole number >= 0, got 'abc'", None),
        ("config negative seed", ["retrain", "--forget", "class:3", "--config", f"{f}/conf_seed_negative.yaml"],
         "'seed' must be a whole number >= 0, got -1", None),
        ("config model a list", ["train", "--config", f"{f}/conf_model_list.yaml"], "'model' must be a string", None),
        ("config model options not a mapping", ["train", "--config", f"{f}/conf_model_options_int.yaml"],
         "'model_options' must be a mapping", None),
        ("config recipe field at the top", ["train", "--config", f"{f}/conf_epochs.yaml"],
         "unknown key(s) ['epochs'] ('epochs' is a recipe field: put it under recipe:); valid keys: data, root", None),
        ("config unknown key", ["train", "--config", f"{f}/conf_typo.yaml"],
         "unknown key(s) ['epochz']; valid keys: data, root, data_options, model, model_options, seed, recipe", None),
        ("forget config hyperparameters not a mapping", ["forget", "--model", "{original}", "--forget", "class:3",
                                                         "--config", f"{f}/conf_hp_int.yaml"],
         "'hyperparameters' must be a mapping", None),
        ("forget config seed not a number", ["forget", "--model", "{original}", "--forget", "class:3", "--config",
                                             f"{f}/conf_seed_text.yaml"], "'seed' must be a whole number >= 0", None),
        ("forget config flat keys", ["forget", "--model", "{original}", "--method", "ft", "--forget", "class:3",
                                     "--config", f"{f}/conf_flat_hp.yaml"],
         "unknown key(s) ['budget', 'method'] ('budget' is a hyperparameter of ft: put it under hyperparameters:; "
         "'method' is the command-line option --method); valid keys: seed, hyperparameters", None),
        ("train negative seed", ["train", "--seed", "-1"], "--seed must be >= 0, got -1", None),
        ("retrain negative seed", ["retrain", "--forget", "class:3", "--seed", "-1"], "--seed must be >= 0, got -1",
         None),
        ("forget negative seed", ["forget", "--model", "{original}", "--forget", "class:3", "--seed", "-1"],
         "--seed must be >= 0, got -1", None),
        ("audit negative seed", ["audit", "--seed", "-1"], "--seed must be >= 0, got -1", None),
        ("audit of no epochs", ["audit", "--epochs", "0"], "epochs: Input should be greater than 0", None),
        ("audit num-cpus with an address", ["audit", "--executor", "ray", "--num-cpus", "1", "--address", "auto"],
         "num_cpus sizes a local Ray cluster; it cannot be given with an address", None),
        ("erase negative seed", ["erase", "--model-dir", f"{f}/conf.d", "--concept", "x", "--out", f"{f}/erased",
                                 "--seed", "-1"], "--seed must be >= 0, got -1", None),
        ("bench negative seed", ["bench", "--seeds", "0,-1"], "--seeds must be >= 0, got -1", None),
        ("2-D indices npy", ["retrain", "--forget", f"indices:{f}/two_d.npy"],
         "holds an array of shape (2, 5); expected a 1-D integer array of training indices or a 1-D boolean mask",
         None),
        ("indices npy not a npy", ["retrain", "--forget", f"indices:{f}/garbage.npy"],
         "is not a readable .npy file of indices (no NumPy header)", None),
    ]


CLI_CASES = _cli_cases()


@pytest.mark.parametrize("args, message, env", [c[1:] for c in CLI_CASES], ids=[c[0] for c in CLI_CASES])
def test_a_bad_command_is_one_line_exit_2_and_writes_nothing(args, message, env, stored, files, tmp_path):
    store, paths = stored
    uses_stored = any("{original}" in a or "{oracle}" in a for a in args)
    args = [a.format(files=files, **paths) for a in args]
    fresh = tmp_path / "fresh-store"  # commands that would create a store get an empty one
    env = {"UNLEARNKIT_STORE": str(store if uses_stored else fresh), **(env or {})}
    before, before_fresh = tree(store), tree(fresh)
    result = runner.invoke(app, [*args, "--json"] if args[0] != "trian" else args, env=env)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert message in lines[0]
    assert tree(store) == before and tree(fresh) == before_fresh
    assert not (files / "pwned").exists()
    if args[0] != "trian":
        assert message in json.loads(result.stdout.strip().splitlines()[-1])["error"]


def _api_cases(data, model, split):
    nan_model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    with torch.no_grad():
        nan_model[1].weight[0, 0] = float("nan")
    hwc = [(torch.rand(8, 8, 3), 0)] * 4
    few_classes = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 5))
    other_split = uk.make_split("random:0.1", uk.load_dataset("breast_cancer")) if data is not None else None
    return [
        ("split of nothing", lambda: uk.make_split(None, data), "forget spec is a string"),
        ("split without data", lambda: uk.make_split("random:0.1", None), "needs a dataset"),
        ("split seed a string", lambda: uk.make_split("random:0.1", data, seed="a"), "seed must be an integer"),
        ("split arguments swapped", lambda: uk.make_split(data, "class:3"),
         "make_split takes the spec first, then the dataset: make_split('class:3', data)"),
        ("unknown model name", lambda: uk.train(data, "cnnn"), "unknown model 'cnnn'"),
        ("model of another type", lambda: uk.train(data, 3), "train() takes a model name"),
        ("floor of an unknown model name", lambda: uk.noise_floor(data, "cnnn", split), "unknown model 'cnnn'"),
        ("floor without a split", lambda: uk.noise_floor(data, "mlp", None), "noise_floor() takes the ForgetSplit"),
        ("spec for a dataset name", lambda: uk.spec_for("cnn", "digits"), "spec_for() sizes model 'cnn' for an"),
        ("unlearning data as a name", lambda: uk.unlearn(model, split, "ft", data="digits"),
         "unlearn() takes an ImageDataset (uk.load_dataset, uk.from_torch) as data=, got str"),
        ("bench of a dataset name", lambda: uk.bench("digits", "mlp", methods=["ft"]),
         "the bench takes an ImageDataset"),
        ("bench of no method", lambda: uk.bench(data, "mlp", methods=[]), "at least one method is needed"),
        ("runtime as a device name", lambda: uk.unlearn(model, split, "ft", runtime="cpu"),
         "unlearn() takes a Runtime (uk.Runtime.create('cpu', 1)) as the runtime, got str 'cpu'"),
        ("threads as a string", lambda: uk.Runtime.create("cpu", "2"), "threads must be an integer >= 1, got '2'"),
        ("evaluation seed a string", lambda: uk.evaluate(model, model, split, data, seed="x"),
         "evaluate()'s seed must be an integer"),
        ("verdict on a model with NaN weights", lambda: uk.verdict(model, nan_model, split, data),
         "the unlearned has NaN or infinite weights"),
        ("frozen model", lambda: uk.unlearn(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
                                            .requires_grad_(False), split, "ft"), "no trainable parameters"),
        ("training a module with no parameters", lambda: uk.train(data, torch.nn.Flatten()),
         "train(): the module has no trainable parameters"),
        ("checkpoint of nothing", lambda: uk.load_checkpoint(None), "a checkpoint is a folder path, got NoneType"),
        ("held-out data of the forgotten class only", lambda: uk.unlearn(model, split, "ft", heldout=data.train(
            split.forget)), "the held-out data holds only the forgotten classes [3]"),
        ("negative label", lambda: uk.from_torch([(torch.zeros(1, 4, 4), -1)], [(torch.zeros(1, 4, 4), 0)]),
         "label -1"),
        ("HWC images", lambda: uk.from_torch(hwc, hwc), "looks like (H, W, C)"),
        ("text labels", lambda: uk.from_torch([(torch.zeros(1, 4, 4), "cat")], [(torch.zeros(1, 4, 4), 0)]),
         "label"),
        ("empty dataset", lambda: uk.from_torch([], []), "is empty"),
        ("unknown layout", lambda: uk.from_torch(hwc, hwc, layout="WHC"), "layout must be one of"),
        ("int32 images", lambda: uk.from_torch([(np.zeros((1, 4, 4), np.int32), 0)], [(np.zeros((1, 4, 4)), 0)]),
         "expected uint8"),
        ("recipe dict out of range", lambda: uk.train(data, uk.spec_for("mlp", data), recipe={"epochs": 0,
                                                                                            "batch_size": 8,
                                                                                            "lr": 0.1}),
         "epochs: Input should be greater than 0"),
        ("recipe of another type", lambda: uk.train(data, uk.spec_for("mlp", data), recipe="fast"),
         "must be a TrainRecipe or a dict"),
        ("recipe that diverges", lambda: uk.train(data, uk.spec_for("mlp", data), recipe={
            "epochs": 2, "batch_size": 64, "lr": 1e7, "momentum": 0.0}), "diverged"),
        ("unknown method", lambda: uk.unlearn(model, split, "magic"), "unknown method 'magic'"),
        ("iterations out of range", lambda: uk.unlearn(model, split, "sfron", iters=-5), "iters"),
        ("split given as a spec", lambda: uk.unlearn(model, "random:0.1", data=data), "takes a ForgetSplit"),
        ("model given as a path", lambda: uk.unlearn("model.safetensors", split), "takes a torch nn.Module"),
        ("model with NaN weights", lambda: uk.unlearn(nan_model, split, "ft"), "NaN or infinite weights"),
        ("model for other inputs", lambda: uk.unlearn(torch.nn.Linear(3, 2), split, "sfron"),
         "the model cannot take this dataset's inputs, batches of shape (2, 1, 8, 8)"),
        ("model with too few classes", lambda: uk.unlearn(few_classes, split, "ft"),
         "outputs of shape (2, 5) for 2 samples; expected (2, 10)"),
        ("training a model for other inputs", lambda: uk.train(data, torch.nn.Linear(3, 2)),
         "the model cannot take this dataset's inputs"),
        ("floor seed a string", lambda: uk.noise_floor(data, uk.spec_for("mlp", data), split, seed="a"),
         "seed must be an integer"),
        ("verdict on a spec string", lambda: uk.verdict(model, model, "class:3", data),
         "verdict() takes a ForgetSplit"),
        ("bench without seeds", lambda: uk.bench(data, "mlp", methods=["ft"], seeds=[]),
         "invalid bench: seeds: Value error, at least one seed is needed"),
        ("bench seed negative", lambda: uk.bench(data, "mlp", methods=["ft"], seeds=[-1]), "seeds must be >= 0"),
        ("bench seed twice", lambda: uk.bench(data, "mlp", methods=["ft"], seeds=[0, 0]),
         "a seed is listed twice in the bench's seeds: [0, 0]"),
        ("split seed negative", lambda: uk.make_split("random:0.1", data, seed=-3), "seed must be >= 0, got -3"),
        ("floor seed negative", lambda: uk.noise_floor(data, "mlp", split, seed=-1), "seed must be >= 0, got -1"),
        ("verdict seed negative", lambda: uk.verdict(model, model, split, data, seed=-1), "seed must be >= 0"),
        ("tuning seed negative", lambda: uk.tune(data, "mlp", ["ft"], seeds=[-5]),
         "tune()'s seeds must be >= 0, got -5"),
        ("tuning seed twice", lambda: uk.tune(data, "mlp", ["ft"], seeds=[5, 5]),
         "a seed is listed twice in tune()'s seeds: [5, 5]"),
        ("tuning seeds a number", lambda: uk.tune(data, "mlp", ["ft"], seeds=5),
         "tune()'s seeds must be a list of whole numbers, got 5"),
        ("tuning seeds empty", lambda: uk.tune(data, "mlp", ["ft"], seeds=[]), "tune()'s seeds names no seed"),
        ("tuning budget negative", lambda: uk.tune(data, "mlp", ["ft"], max_cost=-1), "max_cost must be a share"),
        ("tuning budget a string", lambda: uk.tune(data, "mlp", ["ft"], max_cost="a"), "max_cost must be a share"),
        ("tuning trials a string", lambda: uk.tune(data, "mlp", ["ft"], max_trials="3"),
         "max_trials must be at least 1, got '3'"),
        ("bench forget not a spec", lambda: uk.bench(data, "mlp", forget=3, methods=["ft"]),
         "forget specs are strings such as random:0.1"),
        ("oracle of a spec string", lambda: uk.train(data, uk.spec_for("mlp", data), split="class:3"),
         "train() takes a ForgetSplit"),
        ("oracle of another dataset's split", lambda: uk.train(data, uk.spec_for("mlp", data), split=other_split),
         "the split covers 426 training samples but dataset 'digits' has 1437"),
        ("training without a dataset", lambda: uk.train(None, uk.spec_for("mlp", data)),
         "train() takes an ImageDataset"),
        ("training seed a string", lambda: uk.train(data, uk.spec_for("mlp", data), seed="0"),
         "train()'s seed must be an integer, got '0'"),
        ("unlearning seed a string", lambda: uk.unlearn(model, split, "ft", seed="0"), "unlearn()'s seed must be"),
        ("held-out data as a name", lambda: uk.unlearn(model, split, "ft", heldout="test"),
         "heldout must be a DataView such as data.test()"),
        ("held-out data of other inputs", lambda: uk.unlearn(model, split, "ft", heldout=uk.load_dataset(
            "breast_cancer").test()), "the held-out samples are shaped (30, 1, 1) but the dataset's are (1, 8, 8)"),
        ("indices out of range", lambda: uk.make_split([0, 99999], data), "index(es) out of range 0..1436"),
        ("mask of the wrong length", lambda: uk.make_split(np.ones(5, dtype=bool), data),
         "one entry per training sample (1437), got 5"),
        ("unknown dataset", lambda: uk.load_dataset("nope"), "unknown dataset 'nope'"),
        ("unknown dataset option", lambda: uk.load_dataset("digits", bogus=1), "has no option(s) ['bogus']"),
        ("one class only", lambda: uk.from_torch([(torch.zeros(1, 4, 4), 0)] * 4, [(torch.zeros(1, 4, 4), 0)] * 2),
         "the labels name a single class; a classifier needs at least two"),
        ("model too large for the images", lambda: uk.spec_for("lenet5", data), "cannot take the 1x8x8 images"),
        ("unknown device", lambda: uk.Runtime.create("tpu"), "unknown device"),
        ("zero threads", lambda: uk.Runtime.create("cpu", 0), "threads must be an integer >= 1"),
        ("mismatched metric inputs", lambda: __import__("unlearnkit.evaluation", fromlist=["accuracy"]).accuracy(
            torch.zeros(3), torch.zeros(2)), "one prediction per label"),
    ]


@pytest.fixture(scope="module")
def api_objects(stored):
    data = uk.load_dataset("digits")
    return data, uk.load_checkpoint(stored[1]["original"]).load_model(), uk.make_split("class:3", data)


API_IDS = [c[0] for c in _api_cases(None, None, None)]


@pytest.mark.parametrize("index", range(len(API_IDS)), ids=API_IDS)
def test_a_bad_call_raises_one_clear_unlearnkit_error(index, api_objects, tmp_path):
    data, model, split = api_objects
    before = {k: v.clone() for k, v in model.state_dict().items()}
    _, call, message = _api_cases(data, model, split)[index]
    with pytest.raises(UnlearnkitError) as caught:
        call()
    assert message in str(caught.value) and "\n" not in str(caught.value)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert tree(tmp_path / "store") == []


def test_enough_bad_inputs_are_covered():
    assert len(CLI_CASES) + len(API_IDS) >= 60
