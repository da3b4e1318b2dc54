"""The README's error table is the code's table."""

from __future__ import annotations

from pathlib import Path

from app.providers.tencent.errors import markdown_table

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_documents_every_error_code_as_classified() -> None:
    assert markdown_table() in README.read_text()
