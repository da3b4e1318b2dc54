"""The README's JD error table is the code's table."""

from __future__ import annotations

from pathlib import Path

from app.providers.jdcloud.errors import markdown_table

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_documents_every_jd_error_status_as_classified() -> None:
    assert markdown_table() in README.read_text()
