"""The book's local Sphinx extensions (book/_ext) do what their docstrings say."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from pybtex.database import Entry, Person

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "book" / "_ext"))

import bib_style  # noqa: E402
import page_fixes  # noqa: E402
import repository  # noqa: E402


@pytest.mark.parametrize(
    "text, plain",
    [
        ("np.float64(0.25)", "0.25"),
        ("np.int64(12)", "12"),
        ("0.5", "0.5"),
        ("'abc'", "'abc'"),
    ],
)
def test_numpy_scalar_reprs_are_unwrapped(text, plain):
    assert page_fixes.plain_number(text) == plain


def test_glue_formats_numpy_scalars_after_the_patch():
    page_fixes._patch_glue_formatting()
    from myst_nb.ext.glue import roles

    assert roles.format_plain_text("np.float64(0.9234)", ".1%") == "92.3%"
    assert roles.format_plain_text("1234", ",") == "1,234"


def _page(title: str, body: str) -> str:
    head = f"<head><title>{title} &#8212; Book</title></head>"
    return f"<html>{head}<body>{body}</body></html>"


def test_bibliography_entries_get_links_back_to_each_citing_page(tmp_path):
    cite = (
        '<a class="reference internal" href="../book/bibliography.html#id3">X 2017</a>'
    )
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "notebooks" / "05_a.html").write_text(
        _page("Chapter 5", cite + " " + cite)
    )
    (tmp_path / "notebooks" / "06_b.html").write_text(_page("Chapter 6", cite))
    (tmp_path / "book").mkdir()
    entry = (
        '<div class="citation" id="{id}" role="doc-biblioentry">\n'
        '<span class="label">X</span>\n<p>A work.</p>\n</div>'
    )
    bib = tmp_path / "book" / "bibliography.html"
    bib.write_text(
        _page("Bibliography", entry.format(id="id3") + entry.format(id="id4"))
    )
    app = SimpleNamespace(builder=SimpleNamespace(format="html"), outdir=str(tmp_path))
    for _ in range(2):  # a rebuild that rewrites nothing must not add the links twice
        bib_style._add_backlinks(app, None)
    chapter = (tmp_path / "notebooks" / "05_a.html").read_text()
    assert 'id="cited-id3-1"' in chapter and 'id="cited-id3-2"' in chapter
    text = bib.read_text()
    assert text.count('<p class="cited-in">') == 1, "only the cited work gets backlinks"
    assert (
        'Cited in: <a class="reference internal cited-in" '
        'href="../notebooks/05_a.html#cited-id3-1">Chapter 5</a>, '
        '<a class="reference internal cited-in" '
        'href="../notebooks/06_b.html#cited-id3-1">Chapter 6</a></p>'
    ) in text


def test_author_year_labels_name_one_work_each():
    def work(authors: list[str], year: str) -> Entry:
        return Entry(
            "article",
            fields={"year": year},
            persons={"author": [Person(a) for a in authors]},
        )

    entries = [
        work(["Elman, Jeffrey"], "1990"),
        work(["Cho, K.", "Bengio, Y."], "2014"),
        work(["Press, O.", "Smith, N.", "Lewis, M."], "2022"),
        work(["Press, O.", "Wolf, L.", "Other, A."], "2022"),
    ]
    labels = list(bib_style.AuthorYearLabels().format_labels(entries))
    assert labels == [
        "Elman 1990",
        "Cho and Bengio 2014",
        "Press et al. 2022a",
        "Press et al. 2022b",
    ]


def test_the_address_is_filled_in_from_the_one_setting():
    page = "git clone {{ repository_url }} book\nsee <{{ repository_url }}>"
    filled = repository.fill_in(page, "https://example.org/book/", "setup")
    assert (
        filled
        == "git clone https://example.org/book book\nsee <https://example.org/book>"
    )
    assert repository.fill_in("no address here", None, "intro") == "no address here"
    with pytest.raises(Exception, match="repository_url"):
        repository.fill_in(page, None, "setup")


def test_the_setup_page_takes_its_address_from_config_yml():
    root = Path(__file__).resolve().parents[1]
    config = yaml.safe_load((root / "_config.yml").read_text())
    url = config["sphinx"]["config"]["html_theme_options"]["repository_url"]
    assert url.startswith("https://"), url
    setup = (root / "book" / "setup.md").read_text()
    assert "git clone {{ repository_url }}" in setup and "pip install -e ." in setup
    assert "<this repository>" not in setup and url not in setup, (
        "the address is written once, in _config.yml"
    )
