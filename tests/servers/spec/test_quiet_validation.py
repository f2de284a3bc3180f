"""`envfleet validate` says one line for a valid environment: the parser's notes about SQL that is not a
problem (SQLite JSON paths sqlglot does not know) never reach the user, and real problems keep their location."""

from __future__ import annotations

import copy
import logging
import subprocess
from pathlib import Path

import pytest

from servers.spec.sql_analysis import SqlProblem, analyze_statement
from tests.conftest import ENV_ROOT, ENVFLEET, MINI_SPEC, write_env

_CATALOG = {"items": {"sku": "TEXT", "tags": "TEXT"}}


def validate(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*ENVFLEET, "validate", str(path)], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("env", ["library", "clinic", "online_store"])
def test_a_reference_environment_validates_in_one_line(env: str) -> None:
    result = validate(ENV_ROOT / env)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert len(result.stdout.splitlines()) == 1 and result.stdout.startswith(f"✓ {env} ")


def _with_json_paths() -> dict:
    spec = copy.deepcopy(MINI_SPEC)
    get_item = next(t for t in spec["tools"] if t["name"] == "get_item")
    get_item["steps"][1]["sql"] = (
        "SELECT sku, tags ->> '$[#-1]' AS last_tag, json_extract(tags, '$[#-2]') AS before_last "
        "FROM items WHERE sku = :sku"
    )
    return spec


def test_sqlite_json_paths_sqlglot_does_not_know_stay_quiet(tmp_path: Path) -> None:
    result = validate(write_env(tmp_path / "paths", _with_json_paths()))
    assert result.returncode == 0, result.stderr
    assert result.stderr == "" and "JSON path" not in result.stdout
    first, *others = result.stdout.splitlines()
    assert first.startswith("✓ mini ")
    assert all(line.startswith("  warning tools.restock:") for line in others)  # the mini spec's own warning


def test_a_broken_statement_still_reports_its_tool_and_step(tmp_path: Path) -> None:
    spec = _with_json_paths()
    restock = next(t for t in spec["tools"] if t["name"] == "restock")
    restock["steps"][0]["sql"] = "VACUUM"
    get_item = next(t for t in spec["tools"] if t["name"] == "get_item")
    get_item["steps"][1]["sql"] = get_item["steps"][1]["sql"].replace("sku, tags", "sku, colour, tags")
    result = validate(write_env(tmp_path / "broken", spec))
    assert result.returncode == 1
    assert "tools.restock.steps[0](exec).sql" in result.stderr and "VACUUM" in result.stderr
    assert "tools.get_item.steps[1](return).sql" in result.stderr and "colour" in result.stderr
    assert "JSON path" not in result.stderr and "Falling back" not in result.stderr


def test_the_analysis_logs_nothing_for_sqlite_json_paths(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="sqlglot"):
        analyze_statement("SELECT tags ->> '$[#-1]' AS last FROM items WHERE sku = :sku", "select", _CATALOG)
        with pytest.raises(SqlProblem, match="must be a SELECT"):
            analyze_statement("VACUUM", "select", _CATALOG)
    assert [r.getMessage() for r in caplog.records if r.name == "sqlglot"] == []


def test_other_sqlglot_records_still_pass(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="sqlglot"):
        logging.getLogger("sqlglot").warning("something sqlglot wants said")
    assert [r.getMessage() for r in caplog.records] == ["something sqlglot wants said"]
