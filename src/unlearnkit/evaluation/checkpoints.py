"""Evaluate stored checkpoints: rebuild their dataset and split from the records, check they belong together."""
from __future__ import annotations

import json
from pathlib import Path

from ..artifacts import Checkpoint, load_checkpoint
from ..data.images import ImageDataset
from ..data.splits import ForgetSplit
from ..errors import CheckpointError
from ..pipeline import dataset_of
from ..runtime import Runtime
from .membership import ATTACKS
from .protocol import evaluate


def _recorded_split(checkpoint: Checkpoint) -> str | None:
    return (checkpoint.record.get("split") or {}).get("fingerprint")


def shared_split(model: Checkpoint, oracle: Checkpoint, dataset: ImageDataset) -> tuple[ForgetSplit, list[str]]:
    """The forget split both checkpoints were made for (the model's, else the oracle's), and notes."""
    notes = []
    oracle_split = oracle.split
    if oracle_split is None:
        raise CheckpointError(f"'{oracle.path}' is not an oracle: it has no forget split beside its weights "
                              "(train one with `unlearnkit retrain --forget SPEC`)")
    model_split = model.split
    model_fingerprint = model_split.fingerprint if model_split is not None else _recorded_split(model)
    if model_fingerprint is not None and model_fingerprint != oracle_split.fingerprint:
        recorded = model.record.get("split") or {}
        described = f"{recorded['spec']} seed {recorded.get('seed')}" if recorded.get("spec") else "another split"
        raise CheckpointError(f"the model '{model.path}' was made for forget split {described} (fingerprint "
                              f"{model_fingerprint}) but the oracle '{oracle.path}' was retrained for "
                              f"{oracle_split.spec} seed {oracle_split.seed} ({oracle_split.fingerprint}): "
                              "use the oracle of the same split")
    if model_fingerprint is None:
        notes.append(f"the model has no forget split (an original model?): evaluated on the oracle's split "
                     f"{oracle_split.spec}")
    split = model_split if model_split is not None else oracle_split
    if split.n_train != len(dataset.train_labels):
        raise CheckpointError(f"the forget split covers {split.n_train} training samples but dataset "
                              f"'{dataset.name}' has {len(dataset.train_labels)}")
    return split, notes


def check_original(model: Checkpoint, original: Checkpoint) -> None:
    """The --original of an evaluation must be an original model (trained on all the data), and the one the
    model was unlearned from when its record names it."""
    kind = original.record.get("kind")
    if kind != "original":
        raise CheckpointError(f"'{original.path}' is {'an' if str(kind)[:1] in 'aeiou' else 'a'} {kind} model, not an "
                              "original one: --original takes the model trained on all the data (unlearnkit train)")
    named = (model.record.get("original") or {}).get("key")
    if named and original.record.get("key") != named:
        raise CheckpointError(f"'{model.path}' was unlearned from original {named}, not from '{original.path}' "
                              f"({original.record.get('key')})")


def unlearning_record(checkpoint: Checkpoint) -> dict | None:
    """What making this model cost: record["unlearning"] of an unlearned checkpoint; for an oracle, its own
    training (retraining is itself exact unlearning, SFR-on's RT row); nothing for an original model."""
    if checkpoint.record.get("unlearning"):
        return checkpoint.record["unlearning"]
    if checkpoint.record.get("kind") == "oracle":
        return checkpoint.record
    return None


def unlike_oracle(model: Checkpoint, oracle: Checkpoint) -> list[str]:
    """Notes where the oracle is not the model retrained as the evaluated one's original was: another model, or
    another training recipe (the original's, found through the unlearned model's record where it is stored)."""
    notes = []
    def described(record: dict) -> dict:  # as stored: a record held in memory has tuples where JSON has lists
        return json.loads(json.dumps({k: v for k, v in (record.get("model") or {}).items() if k != "ensemble"},
                                     default=str))

    mine, theirs = described(model.record), described(oracle.record)
    if mine and theirs and mine != theirs:
        notes.append(f"the oracle is another model ({theirs.get('name')} {theirs.get('options') or ''}) than the one "
                     f"evaluated ({mine.get('name')} {mine.get('options') or ''}): it is not its retrained counterpart")
    source = (model.record.get("original") or {}).get("path")
    recipe = model.record.get("recipe")
    if recipe is None and source and Path(source).is_dir():
        recipe = load_checkpoint(source).record.get("recipe")
    retrained = oracle.record.get("recipe")
    if recipe and retrained and json.dumps(recipe, sort_keys=True) != json.dumps(retrained, sort_keys=True):
        differ = sorted(k for k in recipe if recipe.get(k) != retrained.get(k))
        notes.append(f"the oracle was trained with another recipe than the original ({', '.join(differ)} differ): "
                     "the gaps and the speed-up compare unlike trainings")
    return notes


def evaluate_checkpoints(model: str | Path, oracle: str | Path, original: str | Path | None = None,
                         mia: str = "mia_entropy", runtime: Runtime | None = None, root: str | Path | None = None,
                         seed: int = 0, attacks: tuple[str, ...] | None = None) -> dict:
    """`evaluate()` on checkpoint folders: the result, plus the checkpoints, data and split it used."""
    for name in (mia, *(attacks or ())):
        ATTACKS.get(name)  # fail on a typo before loading anything
    model_ck, oracle_ck = load_checkpoint(model), load_checkpoint(oracle)
    original_ck = load_checkpoint(original) if original is not None else None
    if original_ck is not None:
        check_original(model_ck, original_ck)
    dataset = dataset_of(model_ck, tuple(c for c in (oracle_ck, original_ck) if c is not None), root)
    split, notes = shared_split(model_ck, oracle_ck, dataset)
    result = evaluate(model_ck.load_model(), oracle_ck.load_model(), split, dataset, runtime,
                      original=original_ck.load_model() if original_ck else None,
                      unlearn_record=unlearning_record(model_ck), oracle_record=oracle_ck.record,
                      mia=mia, attacks=attacks, seed=seed)
    result["notes"] = notes + unlike_oracle(model_ck, oracle_ck) + result["notes"]
    result["checkpoints"] = {"model": str(model_ck.path), "oracle": str(oracle_ck.path),
                             "original": str(original_ck.path) if original_ck else None}
    result["model_kind"] = model_ck.record.get("kind")
    result["method"] = (model_ck.record.get("unlearning") or {}).get("method")
    result["data"] = {"name": dataset.name, "fingerprint": dataset.fingerprint}
    result["split"] = split.describe()
    return result
