"""The book's local Sphinx extensions (book/_ext) do what their docstrings say."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "book" / "_ext"))

import page_fixes  # noqa: E402


@pytest.mark.parametrize(
    "text, plain",
    [("np.float64(0.25)", "0.25"), ("np.int64(12)", "12"), ("0.5", "0.5"), ("'abc'", "'abc'")],
)
def test_numpy_scalar_reprs_are_unwrapped(text, plain):
    assert page_fixes.plain_number(text) == plain


def test_glue_formats_numpy_scalars_after_the_patch():
    page_fixes._patch_glue_formatting()
    from myst_nb.ext.glue import roles

    assert roles.format_plain_text("np.float64(0.9234)", ".1%") == "92.3%"
    assert roles.format_plain_text("1234", ",") == "1,234"
