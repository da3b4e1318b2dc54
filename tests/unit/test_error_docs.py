"""docs/errors.md's error tables are the code's tables, for every cloud keybind speaks."""

from __future__ import annotations

from pathlib import Path

from app.providers.jdcloud.errors import markdown_table as jdcloud_table
from app.providers.tencent.errors import markdown_table as tencent_table

ERRORS_DOC = Path(__file__).resolve().parents[2] / "docs" / "errors.md"


def test_error_docs_document_every_tencent_error_code_as_classified() -> None:
    assert tencent_table() in ERRORS_DOC.read_text()


def test_error_docs_document_every_jd_error_status_as_classified() -> None:
    assert jdcloud_table() in ERRORS_DOC.read_text()
