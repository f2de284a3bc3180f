"""Documentation that runs: every ```python block of the README and docs/ is executed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import REPO

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
EXAMPLES = [(doc, index, code) for doc in DOCS for index, code in enumerate(BLOCK.findall(doc.read_text()))]


@pytest.mark.parametrize(("doc", "index", "code"), EXAMPLES, ids=[f"{d.name}#{i}" for d, i, _ in EXAMPLES])
def test_python_examples_run(doc: Path, index: int, code: str) -> None:
    exec(compile(code, f"{doc.name}#{index}", "exec"), {"__name__": "__docs__"})


def test_there_are_examples() -> None:
    assert len(EXAMPLES) >= 1
