"""The audit's report says when its pool is too small for ε and KLOM to be trusted (without running an audit)."""
from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from unlearnkit.audit.audit import SUMMARY_KEYS
from unlearnkit.audit.report import TRUSTED_PER_SIDE, small_pool_note, write_rows
from unlearnkit.cli import app


def fake_result(models: int) -> dict:
    row = {**dict.fromkeys(SUMMARY_KEYS, 0.5), "method": "oracle", "error": None, "klom": 11.51, "arrays": None}
    return {"rows": [row], "pool": {"models": models, "per_side": models // 4, "seed": 0}}


@pytest.mark.parametrize("models", [8, 16, 32])
def test_a_small_pool_carries_a_note_in_every_report_file(models, tmp_path):
    note = small_pool_note(fake_result(models)["pool"])
    assert note.startswith(f"note: a pool of {models} models has {models // 4} per side")
    assert f"fewer than {TRUSTED_PER_SIDE}" in note and "--models 64" in note and "11.51" in note
    paths = write_rows(fake_result(models), tmp_path)
    assert json.loads(paths["json"].read_text())["note"] == note
    assert paths["markdown"].read_text().rstrip().endswith(note)


def test_a_pool_of_64_or_more_has_no_note(tmp_path):
    assert small_pool_note(fake_result(64)["pool"]) is None and small_pool_note(fake_result(128)["pool"]) is None
    paths = write_rows(fake_result(64), tmp_path)
    assert json.loads(paths["json"].read_text())["note"] is None
    assert "note:" not in paths["markdown"].read_text()


def test_the_audit_command_prints_the_note(monkeypatch, tmp_path):
    import unlearnkit.audit.audit as audit

    result = fake_result(8)
    row = {k: v for k, v in result["rows"][0].items() if k != "arrays"}
    monkeypatch.setattr(audit, "audit_command", lambda *a, **k: {
        "rows": [row], "report": str(tmp_path / "report.html"), "pool": result["pool"],
        "note": small_pool_note(result["pool"])})
    out = CliRunner().invoke(app, ["audit", "--models", "8", "--threads", "1", "--json"])
    assert out.exit_code == 0, out.output
    assert small_pool_note(result["pool"]) in out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1])["note"].startswith("note: a pool of 8 models")
