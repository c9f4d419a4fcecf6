"""The book's bibliography: author-year labels and links back to where each work is
cited.

The chapters cite in author-year form ("Bahdanau et al., 2015"), so the bibliography
labels its entries the same way instead of [1], [2], ... (the pybtex style
``authoryear``: the plain style with these labels). After the HTML is written, every
citation link in the chapters gets an anchor, and each bibliography entry ends with
"Cited in:" links back to those places, so a reader can go from a paper to the
pages that use it.
"""

from __future__ import annotations

import html
import re
from collections import defaultdict
from pathlib import Path

from pybtex.plugin import register_plugin
from pybtex.style.formatting.plain import Style as PlainStyle
from pybtex.style.labels import BaseLabelStyle
from sphinx.application import Sphinx

BIBLIOGRAPHY_PAGE = "book/bibliography"


def _last_names(entry) -> list[str]:
    people = entry.persons.get("author") or entry.persons.get("editor") or []
    names = []
    for person in people:
        last = " ".join(person.last_names) or " ".join(person.first_names)
        names.append(re.sub(r"[{}]", "", last))
    return names


class AuthorYearLabels(BaseLabelStyle):
    """Labels such as "Vaswani et al. 2017", "Cho and Bengio 2014" or "Elman 1990"."""

    def format_labels(self, sorted_entries):
        labels = []
        for entry in sorted_entries:
            names = _last_names(entry)
            if not names:
                who = entry.fields.get("title", entry.key)[:20]
            elif len(names) == 1:
                who = names[0]
            elif len(names) == 2:
                who = f"{names[0]} and {names[1]}"
            else:
                who = f"{names[0]} et al."
            labels.append(f"{who} {entry.fields.get('year', 'n.d.')}")
        # Two works with the same label get a, b, ... so that every label names one
        # work.
        counts: dict[str, int] = defaultdict(int)
        for label in labels:
            counts[label] += 1
        seen: dict[str, int] = defaultdict(int)
        for label in labels:
            if counts[label] > 1:
                seen[label] += 1
                yield f"{label}{chr(ord('a') + seen[label] - 1)}"
            else:
                yield label


class AuthorYearStyle(PlainStyle):
    default_label_style = AuthorYearLabels


# A page that an incremental build did not rewrite already carries its anchors: match
# both.
_CITE_LINK = re.compile(
    r'<a (?:id="cited-[\w-]+" )?class="reference internal" '
    r'href="(?P<href>[^"#]*bibliography\.html#(?P<target>[\w-]+))"'
)
_OLD_BACKLINKS = re.compile(r'\n<p class="cited-in">.*?</p>')
_TITLE = re.compile(r"<title>(.*?)</title>", re.DOTALL)
_ENTRY = re.compile(
    r'(<div class="citation" id="(?P<id>[\w-]+)" role="doc-biblioentry">.*?</p>)'
    r"(\s*</div>)",
    re.DOTALL,
)


def _page_title(text: str) -> str:
    match = _TITLE.search(text)
    title = html.unescape(match.group(1)) if match else ""
    return title.split(" — ")[0].split(" &#8212; ")[0].strip() or "a page"


def _add_backlinks(app: Sphinx, exception) -> None:
    if exception is not None or app.builder.format != "html":
        return
    out = Path(app.outdir)
    bibliography = out / f"{BIBLIOGRAPHY_PAGE}.html"
    if not bibliography.exists():
        return
    cited_from: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for page in sorted(out.rglob("*.html")):
        if page == bibliography or "_static" in page.parts:
            continue
        text = page.read_text(encoding="utf-8")
        if "bibliography.html#" not in text:
            continue
        title = _page_title(text)
        rel = page.relative_to(out).as_posix()
        counter: dict[str, int] = defaultdict(int)

        def anchor(match: re.Match, rel=rel, title=title, counter=counter) -> str:
            target = match.group("target")
            counter[target] += 1
            anchor_id = f"cited-{target}-{counter[target]}"
            cited_from[target].append((f"{rel}#{anchor_id}", title))
            href = match.group("href")
            return f'<a id="{anchor_id}" class="reference internal" href="{href}"'

        page.write_text(_CITE_LINK.sub(anchor, text), encoding="utf-8")

    depth = len(Path(BIBLIOGRAPHY_PAGE).parts) - 1
    prefix = "../" * depth

    def with_backlinks(match: re.Match) -> str:
        places = cited_from.get(match.group("id"), [])
        if not places:
            return match.group(0)
        # One link per citing page; a page that cites a work several times links its
        # first.
        first: dict[str, str] = {}
        for href, title in places:
            first.setdefault(title, href)
        links = ", ".join(
            f'<a class="reference internal cited-in" href="{prefix}{href}">'
            f"{html.escape(t)}</a>"
            for t, href in first.items()
        )
        cited = f'<p class="cited-in">Cited in: {links}</p>'
        return f"{match.group(1)}\n{cited}{match.group(3)}"

    text = _OLD_BACKLINKS.sub("", bibliography.read_text(encoding="utf-8"))
    bibliography.write_text(_ENTRY.sub(with_backlinks, text), encoding="utf-8")


def setup(app: Sphinx) -> dict:
    register_plugin("pybtex.style.formatting", "authoryear", AuthorYearStyle)
    app.connect("build-finished", _add_backlinks)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
