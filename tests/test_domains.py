"""The domain contract: every registered domain names its methods, implements or refuses each operation in one
line, and is the one the CLI picks for a checkpoint; procedures are declared as procedures."""
import pytest

from unlearnkit.artifacts import Checkpoint
from unlearnkit.domains import COMMON_KEYS, DOMAINS, domain, domain_of, names, supporting
from unlearnkit.errors import CheckpointError, ConfigError
from unlearnkit.runtime import Runtime
from unlearnkit.unlearning.methods import METHODS


def test_every_domain_registers_its_methods_and_operations():
    assert names() == ["classification", "generation", "text-to-image"]
    for name in names():
        found = domain(name)
        assert found.name == name and found.title and found.methods.names()
        for method in found.methods.names():
            assert set(found.methods.get(method).columns()) >= {"mask", "forgetting", "remaining", "geometry", "kind"}
    assert supporting("bench") == names() and supporting("forget") == ["classification", "generation"]
    assert "avg_gap" in COMMON_KEYS and "forget_acc" in COMMON_KEYS


def test_an_operation_a_domain_lacks_is_one_line_naming_the_domains_that_have_it(tmp_path):
    with pytest.raises(ConfigError, match=r"`tune --task text-to-image` is not available; tune runs with --task "
                                          r"classification or generation") as refused:
        domain("text-to-image").tune({}, Runtime.create("cpu", 1), tmp_path)
    assert "\n" not in str(refused.value)
    with pytest.raises(ConfigError, match="unknown task 'video'; expected one of: classification, generation"):
        domain("video")


def test_a_checkpoint_names_its_domain(tmp_path):
    assert domain_of(Checkpoint(tmp_path, {"kind": "original"})).name == "classification"
    assert domain_of(Checkpoint(tmp_path, {"task": "generation"})) is DOMAINS.get("generation")
    with pytest.raises(CheckpointError, match="is a generation model, not classification"):
        domain_of(Checkpoint(tmp_path, {"task": "generation"}), "classification")


def test_procedures_are_declared_as_procedures():
    kinds = {name: METHODS.get(name).columns()["kind"] for name in METHODS.names()}
    assert {n for n, k in kinds.items() if k == "procedure"} == {"retrain", "sisa", "iu", "fisher", "ssd",
                                                                 "one_step"}
    assert domain("text-to-image").methods.get("uce").columns()["kind"] == "procedure"
    from dataclasses import replace

    from unlearnkit.unlearning.forgetting import Ascent

    with pytest.raises(ValueError, match="a procedure .* takes no forget or remain part"):
        replace(METHODS.get("retrain"), forget=Ascent()).check()
