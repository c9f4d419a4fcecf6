"""Turn the chapters' plain "chapter N" and "section N" mentions into links, and
link each glossary term at its first use in a chapter.

Authors write "as chapter 3 showed" or "(section 5)"; this tool rewrites each such
mention in a chapter's prose into a link: another chapter through a ``{doc}`` role,
a numbered section of the same page (``## 5. Title``) through its heading anchor, a
section of another chapter ("section 4 of chapter 3", "chapter 3's section 4")
through that page's anchor. The questions, exercises and references at the end of a
chapter are left alone (the flashcards read them as plain text), and so are math,
code, existing links and roles, and headings. The first use of each term of
``book/glossary.md`` in a chapter's prose becomes a ``{term}`` role (a few names
with other everyday meanings, :data:`AMBIGUOUS`, are left to the author).

    python -m tools.crossref          # rewrite notebooks/NN_*.ipynb in place
    python -m tools.crossref --check  # list the unlinked mentions; exit 1 if any

Only the markdown cells change; code cells and their outputs are not touched.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
#: The prose ends where the questions begin.
STOP_HEADINGS = ("## Check your understanding", "## Exercises", "## References")

# Spans that must not be rewritten: roles and inline code, math, links, HTML tags.
_PROTECTED = re.compile(
    r"(\{[\w:-]+\}`[^`]*`"  # a role such as {doc}`...` or {glue:text}`...`
    r"|``[^`]*``|`[^`]*`"  # inline code
    r"|\$\$.*?\$\$|\$[^$\n]+\$"  # math
    r"|!?\[[^\]]*\]\([^)]*\)"  # links and images
    r"|<[^>\n]+>)",  # HTML
    re.DOTALL,
)
_SECTION_OF_CHAPTER = re.compile(
    r"\b(?P<s_word>[Ss]ections?) (?P<sec>\d+) of (?P<c_word>[Cc]hapter) (?P<ch>\d+)\b"
)
_CHAPTERS_SECTION = re.compile(
    r"\b(?P<c_word>[Cc]hapter) (?P<ch>\d+)'s (?P<s_word>[Ss]ections?) (?P<sec>\d+)\b"
)
_CHAPTER = re.compile(r"\b(?P<c_word>[Cc]hapters?) (?P<ch>\d+)\b")
_SECTION = re.compile(r"\b(?P<s_word>[Ss]ections?) (?P<sec>\d+)\b")


def slug(title: str) -> str:
    """The anchor MyST gives a heading (``myst_heading_anchors``)."""
    text = re.sub(r"[`$*]", "", title.strip()).lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def chapter_files(folder: Path = NOTEBOOKS) -> dict[int, Path]:
    """Chapter number -> notebook, for every ``NN_topic.ipynb``."""
    return {int(p.name[:2]): p for p in sorted(folder.glob("[0-9][0-9]_*.ipynb"))}


def section_anchors(nb: dict) -> dict[int, str]:
    """Section number -> anchor, from the page's ``## N. Title`` headings."""
    anchors: dict[int, str] = {}
    for cell in nb["cells"]:
        if cell["cell_type"] != "markdown":
            continue
        for line in "".join(cell["source"]).splitlines():
            m = re.match(r"## (\d+)\. (.+)", line)
            if m:
                anchors[int(m.group(1))] = slug(f"{m.group(1)}. {m.group(2)}")
    return anchors


def split_prose(text: str) -> tuple[str, str | None]:
    """Split a cell at the first heading of the questions: (prose, rest or None)."""
    m = re.search(
        r"^(?:" + "|".join(map(re.escape, STOP_HEADINGS)) + r")\b", text, re.M
    )
    return (text, None) if m is None else (text[: m.start()], text[m.start() :])


def _rewrite_free(
    text: str, sub: Callable[[str], str], seen: Callable[[str], None] | None = None
) -> str:
    """Apply ``sub`` to the parts of one markdown line that are not protected
    (``seen``, if given, is shown each protected span, in order)."""
    out, last = [], 0
    for m in _PROTECTED.finditer(text):
        out.append(sub(text[last : m.start()]))
        if seen is not None:
            seen(m.group(0))
        out.append(m.group(0))
        last = m.end()
    out.append(sub(text[last:]))
    return "".join(out)


GLOSSARY = ROOT / "book" / "glossary.md"
#: Glossary names too common in other senses to link automatically ("the key
#: letter" of the recall task, "the head of a list").
AMBIGUOUS = frozenset({"key", "value", "query", "head"})


def glossary_entries(path: Path = GLOSSARY) -> list[tuple[str, ...]]:
    """The names of each glossary entry, in the glossary's order."""
    entries: list[tuple[str, ...]] = []
    names: list[str] = []
    inside = False
    for line in path.read_text().splitlines():
        if line.startswith("```{glossary}"):
            inside = True
        elif inside and line.startswith("```"):
            break
        elif inside and line and not line[0].isspace():
            names.append(line.strip())
        elif inside and names:
            entries.append(tuple(names))
            names = []
    return entries


def _name_pattern(name: str) -> re.Pattern:
    # Acronyms (GRU, RoPE, ALiBi) must match their case; words match any case.
    flags = 0 if any(c.isupper() for c in name[1:]) or name.isupper() else re.IGNORECASE
    return re.compile(r"(?<![\w-])" + re.escape(name) + r"(?![\w-])", flags)


class TermLinker:
    """Links the first use of each glossary term on one page, and only the first."""

    def __init__(self, entries: list[tuple[str, ...]]) -> None:
        self.names = [
            (_name_pattern(n), n, i)
            for i, names in enumerate(entries)
            for n in names
            if n not in AMBIGUOUS
        ]
        self.entry_of = {n.lower(): i for i, names in enumerate(entries) for n in names}
        self.linked: set[int] = set()

    def seen_role(self, span: str) -> None:
        """Note a {term} role already on the page."""
        m = re.match(r"\{term\}`(?:[^`<]*<)?([^`>]+)>?`", span)
        if m:
            entry = self.entry_of.get(m.group(1).strip().lower())
            if entry is not None:
                self.linked.add(entry)

    def link(self, text: str) -> str:
        """Wrap the first unlinked use of each term in ``text`` (free prose)."""
        found = []
        for pattern, name, entry in self.names:
            if entry in self.linked:
                continue
            m = pattern.search(text)
            if m:
                found.append((m.start(), -len(m.group(0)), m.end(), name, entry))
        out, last = [], 0
        for start, _, end, name, entry in sorted(found):
            if start < last or entry in self.linked:
                continue  # overlaps a longer term, or another name of the same one
            shown = text[start:end]
            role = (
                f"{{term}}`{shown}`" if shown == name else f"{{term}}`{shown} <{name}>`"
            )
            out += [text[last:start], role]
            last = end
            self.linked.add(entry)
        out.append(text[last:])
        return "".join(out)


def rewrite(
    markdown: str,
    own: int,
    files: dict[int, Path],
    anchors: dict[int, dict[int, str]],
    terms: TermLinker | None = None,
) -> tuple[str, list[str]]:
    """Link every mention in ``markdown`` (a cell of chapter ``own``), and, with
    ``terms``, the first use of each glossary term not yet linked on the page.

    Returns the new text and the mentions that could not be linked (a chapter that
    does not exist yet is left as text and not reported).
    """
    problems: list[str] = []

    def doc(ch: int) -> str:
        return files[ch].stem

    def section_of(m: re.Match) -> str:
        ch, sec = int(m.group("ch")), int(m.group("sec"))
        if ch not in files:
            return m.group(0)
        anchor = anchors.get(ch, {}).get(sec)
        if anchor is None:
            problems.append(f"{m.group(0)!r}: chapter {ch} has no section {sec}")
            return m.group(0)
        target = f"#{anchor}" if ch == own else f"{files[ch].name}#{anchor}"
        return f"[{m.group(0)}]({target})"

    def chapter(m: re.Match) -> str:
        ch = int(m.group("ch"))
        if ch not in files or ch == own:
            return m.group(0)
        return f"{{doc}}`{m.group(0)} <{doc(ch)}>`"

    def section(m: re.Match) -> str:
        sec = int(m.group("sec"))
        anchor = anchors.get(own, {}).get(sec)
        if anchor is None:
            problems.append(f"{m.group(0)!r}: this chapter has no section {sec}")
            return m.group(0)
        return f"[{m.group(0)}](#{anchor})"

    def free(text: str) -> str:
        # Each pass protects what the previous one linked.
        text = _rewrite_free(text, lambda t: _SECTION_OF_CHAPTER.sub(section_of, t))
        text = _rewrite_free(text, lambda t: _CHAPTERS_SECTION.sub(section_of, t))
        text = _rewrite_free(text, lambda t: _CHAPTER.sub(chapter, t))
        text = _rewrite_free(text, lambda t: _SECTION.sub(section, t))
        if terms is not None:
            text = _rewrite_free(text, terms.link, terms.seen_role)
        return text

    # Prose lines are gathered into runs and rewritten together, so that display
    # math spanning several lines is protected as one span.
    lines: list[str] = []
    run: list[str] = []
    open_fences: list[tuple[str, bool]] = []  # (fence, holds code), innermost last

    def flush() -> None:
        if run:
            lines.append(free("\n".join(run)))
            run.clear()

    for line in markdown.split("\n"):
        stripped = line.lstrip()
        opener = re.match(r"(`{3,}|~{3,}|:{3,})(.*)", stripped)
        in_code = any(code for _, code in open_fences)
        protected = in_code or bool(opener) or stripped.startswith(("#", ":"))
        if opener and open_fences and stripped.strip() == open_fences[-1][0]:
            open_fences.pop()  # the closing fence of the innermost block
        elif opener and not in_code:
            # A directive ({note}, {admonition}) holds prose; a plain fence holds code.
            open_fences.append((opener.group(1), not opener.group(2).startswith("{")))
        if protected:
            flush()
            lines.append(line)  # code, fences, headings and directive options
        else:
            run.append(line)
    flush()
    return "\n".join(lines), problems


def _source(text: str) -> list[str]:
    return text.splitlines(keepends=True)


def process(
    check: bool, folder: Path = NOTEBOOKS, only: set[int] | None = None
) -> list[str]:
    """Rewrite (or, with ``check``, only inspect) the chapters (all, or ``only``);
    return what is unlinked."""
    files = chapter_files(folder)
    books = {ch: json.loads(p.read_text()) for ch, p in files.items()}
    anchors = {ch: section_anchors(nb) for ch, nb in books.items()}
    entries = glossary_entries()
    report: list[str] = []
    for ch, nb in books.items():
        if only is not None and ch not in only:
            continue
        changed = False
        terms = TermLinker(entries)
        for cell in nb["cells"]:
            if cell["cell_type"] != "markdown":
                continue
            old = "".join(cell["source"])
            prose, rest = split_prose(old)
            new, problems = rewrite(prose, ch, files, anchors, terms)
            new += rest or ""
            report += [f"{files[ch].name}: {p}" for p in problems]
            if new != old:
                if check:
                    for a, b in zip(old.split("\n"), new.split("\n")):
                        if a != b:
                            report.append(
                                f"{files[ch].name}: unlinked in {a.strip()[:100]!r}"
                            )
                else:
                    cell["source"] = _source(new)
                    changed = True
            if rest is not None:
                break  # the questions begin: the rest of the page is left alone
        if changed:
            text = json.dumps(nb, indent=1, ensure_ascii=False) + "\n"
            files[ch].write_text(text)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="report, change nothing")
    parser.add_argument(
        "chapters", nargs="*", type=int, help="chapter numbers (default: all)"
    )
    args = parser.parse_args(argv)
    report = process(args.check, only=set(args.chapters) or None)
    for line in report:
        print(line)
    return 1 if report else 0


if __name__ == "__main__":
    sys.exit(main())
