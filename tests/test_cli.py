import json
import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from unlearnkit.cli import app

runner = CliRunner()
FAST = ["--epochs", "3", "--set", "batch_size=64"]


def run(*args):
    result = runner.invoke(app, [str(a) for a in args])
    return result, (json.loads(result.stdout.strip().splitlines()[-1]) if result.stdout.strip() else None)


def test_train_and_retrain_print_json_last(tmp_path):
    result, out = run("train", "--data", "digits", "--model", "cnn", *FAST, "--json")
    assert result.exit_code == 0, result.output
    assert out["kind"] == "original" and out["test_acc"] > 80 and out["wall_time_s"] > 0
    assert (tmp_path / "store").exists() and out["checkpoint"].startswith(str(tmp_path / "store"))
    result, oracle = run("retrain", "--forget", "random:0.1", *FAST, "--json")
    assert result.exit_code == 0, result.output
    assert oracle["kind"] == "oracle" and oracle["split"]["n_forget"] == 144 and "forget_acc" in oracle


def test_yaml_config_is_read_and_flags_override_it(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("model: mlp\nseed: 2\nrecipe:\n  epochs: 2\n  lr: 0.05\n")
    result, out = run("train", "--config", config, "--epochs", "1", "--json")
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "store" / "models" / out["checkpoint"].split("/")[-1] / "record.json").read_text())
    assert record["model"]["name"] == "mlp" and record["seed"] == 2
    assert record["recipe"]["epochs"] == 1 and record["recipe"]["lr"] == 0.05


@pytest.mark.parametrize("args, message", [
    (["train", "--data", "imagenet"], "unknown dataset 'imagenet'; expected one of: digits"),
    (["train", "--model", "vgg"], "unknown model 'vgg'"),
    (["train", "--data", "mnist", "--root", "/nonexistent/folder"], "folder '/nonexistent/folder' does not exist"),
    (["train", "--set", "epochs=-1"], "invalid training recipe"),
    (["retrain", "--forget", "random:1.2"], "random forget fraction must be in (0, 1), got 1.2"),
    (["retrain", "--forget", "class:12"], "class 12 does not exist; expected an index in 0..9"),
    (["retrain", "--forget", "class:0,1,2,3,4,5,6,7,8,9"], "remain set is empty"),
    (["retrain"], "retrain needs --forget"),
    (["forget", "--model", "/nonexistent/ckpt", "--forget", "class:3"],
     "checkpoint '/nonexistent/ckpt' does not exist"),
])
def test_bad_input_is_one_clear_line_and_exit_2(args, message, tmp_path):
    result, out = run(*args, "--json")
    assert result.exit_code == 2
    assert message in result.stderr and result.stderr.count("\n") == 1
    assert message in out["error"]
    assert not (tmp_path / "store" / "models").exists()


def test_indices_out_of_range_via_cli(tmp_path):
    path = tmp_path / "idx.txt"
    path.write_text("0 1 5000")
    result, _ = run("retrain", "--forget", f"indices:{path}")
    assert result.exit_code == 2 and "out of range 0..1436" in result.stderr


def test_forget_writes_the_unlearned_checkpoint_with_its_record(tmp_path):
    _, original = run("train", *FAST, "--json")
    result, out = run("forget", "--model", original["checkpoint"], "--method", "ft", "--forget", "class:3",
                      "--set", "epochs=1", "--json")
    assert result.exit_code == 0, result.output
    assert {"forget_acc", "remain_acc", "test_acc", "wall_time_s", "steps", "hyperparameters"} <= set(out)
    assert out["rte_s"] == out["wall_time_s"]  # the common key, as `forget --task generation` reports it (README)
    record = json.loads((tmp_path / "store" / "unlearned" / out["checkpoint"].split("/")[-1]
                         / "record.json").read_text())
    assert record["unlearning"]["method"] == "ft" and record["unlearning"]["hyperparameters"]["epochs"] == 1
    assert record["split"]["forgotten_classes"] == [3] and record["original"]["key"]
    # the same commands again are answered from the store, and say so
    assert not original["reused"] and not out["reused"]
    _, again = run("train", *FAST, "--json")
    _, repeated = run("forget", "--model", original["checkpoint"], "--method", "ft", "--forget", "class:3",
                      "--set", "epochs=1", "--json")
    assert again["reused"] and again["checkpoint"] == original["checkpoint"] and repeated["reused"]
    said = runner.invoke(app, ["train", *map(str, FAST)]).stdout
    assert "found in the store (trained in" in said


def test_forget_rejects_unknown_method_and_hyperparameter(tmp_path):
    _, original = run("train", *FAST, "--json")
    result, _ = run("forget", "--model", original["checkpoint"], "--method", "magic", "--forget", "class:3")
    assert result.exit_code == 2 and "unknown method 'magic'; expected one of: sfron" in result.stderr
    result, _ = run("forget", "--model", original["checkpoint"], "--method", "ft", "--forget", "class:3",
                    "--set", "epohcs=2")
    assert result.exit_code == 2 and "has no hyperparameter(s) ['epohcs']; valid:" in result.stderr


def test_forget_refuses_a_model_from_another_shape_of_checkpoint(tmp_path):
    _, original = run("train", *FAST, "--json")
    (tmp_path / "store" / "models" / original["checkpoint"].split("/")[-1] / "model.safetensors").write_bytes(b"junk")
    result, _ = run("forget", "--model", original["checkpoint"], "--forget", "class:3")
    assert result.exit_code == 2 and "corrupt or not safetensors" in result.stderr


def test_listing_commands_print_json():
    for command, key in (("datasets", "digits"), ("models", "cnn")):
        result, out = run(command, "--json")
        assert result.exit_code == 0 and key in out
    assert all(out.values()), f"a model without a description: {out}"  # `unlearnkit models` printed mlp bare
    result, out = run("methods", "--json")
    assert result.exit_code == 0 and {"sfron", "ft", "salun"} <= {m["name"] for m in out["methods"]}


def test_an_unlearned_sisa_ensemble_is_stored_and_evaluated(tmp_path):
    _, original = run("train", *FAST, "--json")
    _, oracle = run("retrain", "--forget", "class:3", *FAST, "--json")
    result, out = run("forget", "--model", original["checkpoint"], "--method", "sisa", "--forget", "class:3",
                      "--set", "epochs=2", "--set", "shards=2", "--json")
    assert result.exit_code == 0, result.output
    assert out["forget_acc"] < 20
    result, evaluated = run("evaluate", out["checkpoint"], "--oracle", oracle["checkpoint"], "--json")
    assert result.exit_code == 0, result.output
    assert evaluated["forget_acc"] == pytest.approx(out["forget_acc"]) and evaluated["verification_error"] is None
    assert out["sisa"]["shards"] == 2 and out["sisa"]["shard_choice"] is None  # given, not chosen


def test_sisa_says_which_shards_it_chose_and_why(tmp_path):
    _, original = run("train", *FAST, "--json")
    result = runner.invoke(app, ["forget", "--model", original["checkpoint"], "--method", "sisa", "--forget",
                                 "class:3", "--set", "epochs=1"])
    assert result.exit_code == 0, result.output
    line = next(x for x in result.output.splitlines() if x.startswith("shards: "))
    assert "(5: " in line and "points of the model's" in line
    assert ("the most whose sharded original keeps" in line) != ("a retraining, since no sharded original" in line)


def test_methods_shows_the_typed_defaults_for_a_forget_spec():
    result, out = run("methods", "sfron", "--forget", "class:3", "--json")
    assert result.exit_code == 0
    from unlearnkit.unlearning.methods import METHODS

    assert out["hyperparameters"] == METHODS.get("sfron").parameters("class:3")
    lr = next(s for s in out["settings"] if s["name"] == "lr_scale")
    assert lr["type"] == "float" and lr["range"] == "> 0" and "recipe" in lr["description"]
    assert out["hyperparameters"]["alpha"] == 25.0 and out["hyperparameters"]["iters"] is None


def test_methods_without_a_forget_spec_shows_the_class_wise_defaults_that_differ():
    from typer.testing import CliRunner

    from unlearnkit.cli import app

    shown = CliRunner().invoke(app, ["methods", "sfron"], env={"COLUMNS": "200"}).output
    header = next(line for line in shown.splitlines() if line.startswith("┃ hyperparameter"))
    assert "default (random)" in header and "class-wise" in header
    criterion = next(line for line in shown.splitlines() if line.startswith("│ criterion "))
    assert "'loss'" in criterion and "'auc'" in criterion  # SFR-on's random rule, and the class-wise one
    calibrate = next(line for line in shown.splitlines() if line.startswith("│ calibrate "))
    assert calibrate.count("True") == 1  # the same for both: the class-wise column stays empty


def test_tasks_lists_every_command_that_runs_on_each_domain():
    from unlearnkit.cli import COMMAND_DOMAINS, LISTINGS, command_names

    assert set(command_names()) == set(COMMAND_DOMAINS) | set(LISTINGS)  # a new command must say where it runs
    result, out = run("tasks", "--json")
    assert result.exit_code == 0, result.output
    commands = {t["task"]: set(t["commands"]) for t in out["tasks"]}
    assert commands["classification"] == {"train", "retrain", "forget", "evaluate", "methods", "bench", "tune",
                                          "audit"}
    assert {"train", "retrain", "methods", "bench", "erase"} <= commands["text-to-image"]
    assert "audit" not in commands["text-to-image"] and "erase" not in commands["classification"]
    assert {"retrain", "forget", "evaluate", "tune"} <= commands["generation"]


# The domain's work receives a real SIGINT (Ctrl-C) in a real process, after the command has started.
INTERRUPTED = """
import os, signal, sys, time
from unlearnkit import cli

# As at a terminal: a process started in the background inherits SIGINT ignored, and Python then never raises
# KeyboardInterrupt.
signal.signal(signal.SIGINT, signal.default_int_handler)

class Interrupted:
    name = "classification"

    def train(self, *args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(60)

    bench = train

cli.get_domain = lambda name: Interrupted()
sys.argv = ["unlearnkit", *sys.argv[1:]]
cli.main()
"""


@pytest.mark.parametrize("args", [["train"], ["retrain", "--forget", "class:3"], ["bench", "--quick"]])
def test_ctrl_c_is_one_error_line_and_a_last_json_object_with_exit_130(args, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "UNLEARNKIT_STORE": str(tmp_path / "store")}
    done = subprocess.run([sys.executable, "-c", INTERRUPTED, *args, "--threads", "1", "--json"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 130, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: interrupted"), done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1])["error"].startswith("interrupted")


def test_every_command_goes_through_the_one_error_and_interrupt_wrapper():
    # The Ctrl-C test above runs three commands; the rest share its wrapper only if they were registered by `command`.
    unwrapped = [c.name for c in app.registered_commands if getattr(c.callback, "__wrapped__", None) is None]
    assert not unwrapped and len(app.registered_commands) >= 12


def test_unlearnkit_progress_1_draws_the_bars_where_stderr_is_not_a_terminal(monkeypatch, capsys):
    """README: bars are drawn on a terminal, or with UNLEARNKIT_PROGRESS=1 (a log file, a pipe); 0 draws none."""
    from unlearnkit import progress

    monkeypatch.setenv("UNLEARNKIT_PROGRESS", "1")
    with progress.task("training original", 3) as advance:
        advance()
    assert "training original" in capsys.readouterr().err
    monkeypatch.setenv("UNLEARNKIT_PROGRESS", "0")
    with progress.task("training oracle", 3) as advance:
        advance()
    assert "training oracle" not in capsys.readouterr().err
