"""Open the built book in headless Chromium, as a reader would, offline.

Checks, on every page listed in the table of contents: the page loads from a
local server, every image loads, math is typeset by the bundled MathJax (no
raw TeX left), and the "next" link walks through the chapters in order. At a
phone's width (390 px, touch) and a desktop's (1280 px): no page logs a JavaScript
error, the chapter list and the page contents open and close, there is one search
box, nothing is cut off (no code, output, equation, table or image wider than its
column; on a phone only code, equations and tables scroll, inside their own box and
with a shadow saying so), every figure is numbered, captioned, described, referred
to and legible, chapter mentions are links, glossary terms and numbered equations
are used, every chapter offers its student exercise notebook, and the setup,
flashcards, bibliography and benchmarks pages hold what they promise. Full-page
screenshots of every page at both widths land in ``_build/screenshots/<width>/``.

Needs the built book (``make book`` or ``make book-strict``) and Debian's
``chromium``; without the browser the tests are skipped with the reason shown.
"""

from __future__ import annotations

import functools
import http.server
import re
import shutil
import threading
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
HTML = ROOT / "_build" / "html"
SHOTS = ROOT / "_build" / "screenshots"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def toc_pages() -> list[str]:
    """Document paths in reading order, from _toc.yml."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    pages = [toc["root"]]
    for part in toc.get("parts", []):
        pages += [c["file"] for c in part.get("chapters", [])]
    return [re.sub(r"\.(md|ipynb)$", "", p) for p in pages]


@pytest.fixture(scope="module")
def server():
    if not (HTML / "index.html").exists():
        pytest.skip("the book is not built; run `make book` first")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:  # keep the test output readable
            pass

    handler = functools.partial(Quiet, directory=str(HTML))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture(scope="module")
def browser(server):
    """One headless Chromium for the whole module (Playwright allows one sync
    session)."""
    if CHROMIUM is None:
        pytest.skip(
            "no Chromium here (apt-get install chromium): browser checks skipped"
        )
    sync_api = pytest.importorskip("playwright.sync_api")
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
            ],
        )
        yield b
        b.close()


@pytest.fixture(scope="module")
def page(browser, server):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    blocked: list[str] = []

    def only_local(route):
        if route.request.url.startswith(server):
            route.continue_()
        else:  # a reader offline gets nothing from the internet, so neither do we
            blocked.append(route.request.url)
            route.abort()

    context.route("**/*", only_local)
    pg = context.new_page()
    pg.blocked = blocked
    yield pg
    context.close()


def open_page(page, url: str) -> None:
    response = page.goto(url, wait_until="load")
    assert response is not None and response.ok, (
        f"{url} answered {response and response.status}"
    )
    # MathJax typesets asynchronously; wait until it says it is done (or is absent)
    page.wait_for_function(
        "() => !window.MathJax || (MathJax.startup && MathJax.startup.promise && "
        "(MathJax.startup.promise.then(() => window.__mjdone = true), "
        "window.__mjdone))",
        timeout=30_000,
    )


@pytest.mark.parametrize("doc", toc_pages())
def test_page_renders_with_math_and_images(page, server, doc):
    open_page(page, f"{server}/{doc}.html")
    title = page.title()
    assert title and "404" not in title
    # every image has loaded and has a size
    broken = page.eval_on_selector_all(
        "article img",
        "imgs => imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src)",
    )
    assert broken == [], f"images that did not load on {doc}: {broken}"
    # math: every math element became an <mjx-container>, and no raw TeX delimiters
    # remain
    n_math = page.eval_on_selector_all("article .math", "els => els.length")
    n_typeset = page.eval_on_selector_all("article mjx-container", "els => els.length")
    if n_math:
        assert n_typeset >= n_math, (
            f"{doc}: {n_math} math elements but {n_typeset} typeset"
        )
        text = page.inner_text("article")
        assert "\\(" not in text and "\\[" not in text and "$$" not in text, (
            f"raw TeX on {doc}"
        )
    page.screenshot(
        path=str(SHOTS / (doc.replace("/", "__") + ".png")), full_page=False
    )


def test_math_is_typeset_offline_on_the_intro(page, server):
    open_page(page, f"{server}/book/intro.html")
    assert (
        page.eval_on_selector_all("article mjx-container svg", "els => els.length") > 0
    )
    assert not [u for u in page.blocked if "mathjax" in u.lower()], page.blocked


def test_next_links_walk_the_chapters_in_order(page, server):
    docs = toc_pages()
    open_page(page, f"{server}/{docs[0]}.html")
    for expected in docs[1:]:
        page.click("a.right-next")
        page.wait_for_load_state("load")
        assert page.url.split("#")[0].endswith(f"/{expected}.html"), (
            page.url,
            expected,
        )


def test_sidebar_links_every_chapter(page, server):
    open_page(page, f"{server}/{toc_pages()[0]}.html")
    hrefs = page.eval_on_selector_all("nav.bd-docs-nav a", "as => as.map(a => a.href)")
    for doc in toc_pages()[1:]:
        assert any(h.split("#")[0].endswith(f"/{doc}.html") for h in hrefs), doc


def new_reader(browser, server, width: int):
    """A fresh page of the given width, offline, that records every console error."""
    phone = width < 992  # the theme's breakpoint: below it, the sidebars become drawers
    context = browser.new_context(
        viewport={"width": width, "height": 844}, has_touch=phone, is_mobile=phone
    )
    pg = context.new_page()
    pg.errors = []
    pg.on("console", lambda m: pg.errors.append(m.text) if m.type == "error" else None)
    pg.on("pageerror", lambda e: pg.errors.append(str(e)))
    pg.route(
        "**/*",
        lambda r: r.continue_() if r.request.url.startswith(server) else r.abort(),
    )
    return pg


def sidebar_shown(pg, selector: str) -> bool:
    return pg.eval_on_selector(
        selector,
        "e => { const r = e.getBoundingClientRect(); const s = getComputedStyle(e);"
        " return s.visibility !== 'hidden' && s.display !== 'none' && r.width > 0"
        " && r.right > 0 && r.left < window.innerWidth; }",
    )


def visible(pg, selector: str):
    return [e for e in pg.query_selector_all(selector) if e.is_visible()]


def test_phone_reader_opens_and_closes_the_chapter_list_and_page_contents(
    browser, server
):
    pg = new_reader(browser, server, 390)
    open_page(pg, f"{server}/{toc_pages()[2]}.html")
    primary = ".bd-sidebar-primary"
    assert not sidebar_shown(pg, primary), (
        "the chapter list covers the page before any tap"
    )
    toggles = visible(pg, ".primary-toggle")
    assert len(toggles) == 1, f"{len(toggles)} visible chapter-list buttons at 390 px"
    toggles[0].tap()
    pg.wait_for_timeout(500)
    assert sidebar_shown(pg, primary), (
        "tapping the menu button did not open the chapter list"
    )
    links = pg.eval_on_selector_all(f"{primary} nav.bd-docs-nav a", "as => as.length")
    assert links >= len(toc_pages()) - 1
    pg.touchscreen.tap(380, 400)  # a tap on the page beside the drawer closes it
    pg.wait_for_timeout(500)
    assert not sidebar_shown(pg, primary), (
        "tapping beside the chapter list did not close it"
    )

    secondary = ".bd-sidebar-secondary"
    assert not sidebar_shown(pg, secondary)
    toggles = visible(pg, ".secondary-toggle")
    assert len(toggles) == 1, f"{len(toggles)} visible page-contents buttons at 390 px"
    toggles[0].tap()
    pg.wait_for_timeout(500)
    assert sidebar_shown(pg, secondary), (
        "the page-contents button did not open the contents"
    )
    pg.touchscreen.tap(10, 400)
    pg.wait_for_timeout(500)
    assert not sidebar_shown(pg, secondary), (
        "tapping beside the contents did not close them"
    )
    SHOTS.mkdir(parents=True, exist_ok=True)
    pg.screenshot(path=str(SHOTS / "phone-navigation.png"))
    pg.context.close()


def test_desktop_reader_collapses_and_restores_the_chapter_list(browser, server):
    pg = new_reader(browser, server, 1280)
    open_page(pg, f"{server}/{toc_pages()[2]}.html")
    primary = ".bd-sidebar-primary"
    assert sidebar_shown(pg, primary), "the chapter list is not shown on a desktop"
    toggles = visible(pg, ".primary-toggle")
    assert len(toggles) == 1, f"{len(toggles)} visible chapter-list buttons at 1280 px"
    toggles[0].click()
    pg.wait_for_timeout(500)
    assert not sidebar_shown(pg, primary), (
        "the menu button did not collapse the chapter list"
    )
    visible(pg, ".primary-toggle")[0].click()
    pg.wait_for_timeout(500)
    assert sidebar_shown(pg, primary), (
        "the menu button did not bring the chapter list back"
    )
    pg.context.close()


@pytest.mark.parametrize("width", [390, 1280])
def test_one_search_box(browser, server, width):
    pg = new_reader(browser, server, width)
    open_page(pg, f"{server}/{toc_pages()[2]}.html")
    fields = visible(pg, ".search-button-field, form.bd-search input")
    icons = visible(pg, "button.search-button")
    assert len(fields) + len(icons) == 1, (
        f"{len(fields)} search fields and {len(icons)} search buttons visible at "
        f"{width} px"
    )
    pg.context.close()


def test_bibliography_entries_link_out_and_back(reader, server):
    open_page(reader, f"{server}/book/bibliography.html")
    entries = reader.eval_on_selector_all(
        "div.citation",
        """divs => divs.map(d => ({
            label: d.querySelector('.label').innerText,
            out: [...d.querySelectorAll('a.reference.external')].map(a => a.href),
            back: [...d.querySelectorAll('a.cited-in')].map(a => a.href),
        }))""",
    )
    assert entries, "the bibliography is empty"
    for entry in entries:
        assert not re.fullmatch(r"\[?\d+\]?", entry["label"].strip()), entry["label"]
        assert any(
            re.search(r"doi\.org|arxiv\.org|^https?://", h) for h in entry["out"]
        ), f"{entry['label']} has no DOI, arXiv or publisher link"
        assert entry["back"], f"{entry['label']} links back to no reader that cites it"
    # a backlink lands on the citation it names
    target = entries[0]["back"][0]
    open_page(reader, target)
    anchor = target.split("#")[1]
    assert reader.eval_on_selector(f"[id='{anchor}']", "a => a.href").endswith(
        "bibliography.html#" + anchor.split("-")[1]
    )


def test_flashcards_page_offers_the_anki_deck(reader, server):
    open_page(reader, f"{server}/book/flashcards.html")
    questions = reader.eval_on_selector_all(
        "article details, article .dropdown", "e => e.length"
    )
    assert questions >= 9 * 3, (
        f"only {questions} hidden answers on the flashcards reader"
    )
    href = reader.eval_on_selector("a.download, a[href$='.apkg']", "a => a.href")
    assert href.endswith(".apkg")
    response = reader.request.get(href)
    assert response.ok and response.body()[:2] == b"PK", (
        "the deck is not a zip (.apkg) file"
    )


def test_api_reference_documents_every_module_with_its_shapes(page, server):
    from transformer import CHAPTER_OF_MODULE

    open_page(page, f"{server}/book/api.html")
    ids = set(page.eval_on_selector_all("dl.py [id]", "els => els.map(e => e.id)"))
    for module in CHAPTER_OF_MODULE:
        assert any(i.startswith(f"transformer.{module}.") for i in ids), (
            f"the API reference documents nothing of transformer.{module}"
        )
    mha = page.locator("[id='transformer.multihead.MultiHeadAttention']").locator(
        "xpath=.."
    )
    text = mha.inner_text()
    assert "Shape" in text and "(B, T, C)" in text, (
        "MultiHeadAttention's Shape: is not rendered"
    )
    assert "Parameters" in text and "d_model" in text


@pytest.mark.parametrize(
    "doc", [p for p in toc_pages() if re.match(r"notebooks/\d\d_", p)]
)
def test_chapter_offers_its_student_exercise_notebook(reader, server, doc):
    import json

    open_page(reader, f"{server}/{doc}.html")
    stem = doc.split("/")[-1]
    links = reader.eval_on_selector_all(
        f"a[href$='{stem}.ipynb'].download, a.download[href$='.ipynb']",
        "els => els.map(e => e.href)",
    )
    assert links, f"{doc} has no download link to its student exercise notebook"
    response = reader.request.get(links[0])
    assert response.ok, f"{links[0]} answered {response.status}"
    nb = json.loads(response.body())
    text = json.dumps(nb)
    markers = ("BEGIN SOLUTION", "END SOLUTION", "hidden: true", "_hidden_")
    assert nb["cells"] and not any(m in text for m in markers), (
        "the downloaded notebook is not the student version"
    )


# -------------------------------------------------------------- layout at two widths

# What must not be wider than its box or stick out of the text column, by kind. The
# last field says whether the kind may scroll inside its own box on a phone: code
# blocks, display equations and tables may, when they are scroll containers that show
# a shadow at the edge where they continue (book/_static/book.css); outputs wrap.
LAYOUT_JS = """(phone) => {
  const article = document.querySelector('article.bd-article')
    || document.querySelector('main');
  const column = article.getBoundingClientRect();
  const kinds = [
    ['code', 'div.cell_input pre, div.highlight pre', true],
    ['output', 'div.cell_output pre, div.output pre', false],
    ['equation', 'div.math, mjx-container[display="true"]', true],
    ['table', 'table', true],
    ['image', 'img', false],
  ];
  const problems = [];
  for (const [kind, selector, mayScroll] of kinds) {
    for (const e of article.querySelectorAll(selector)) {
      const box = e.getBoundingClientRect();
      if (!box.width || e.closest('.dropdown, details:not([open])')) continue;
      const text = (e.innerText || e.alt || '').replace(/\\s+/g, ' ').trim();
      const what = kind + ' "' + text.slice(0, 50) + '"';
      if (box.right > column.right + 1 || box.left < column.left - 1) {
        problems.push(what + ' sticks out of the text column');
        continue;
      }
      if (e.scrollWidth <= e.clientWidth + 1) continue;
      const style = getComputedStyle(e);
      const scrolls = ['auto', 'scroll'].includes(style.overflowX);
      const hints = style.backgroundImage.includes('gradient');
      if (!(phone && mayScroll && scrolls && hints)) {
        problems.push(what + ' is ' + e.scrollWidth + ' px wide in a ' + e.clientWidth
                      + ' px box');
      }
    }
  }
  const reader = document.documentElement;
  if (reader.scrollWidth > window.innerWidth + 1) {
    problems.push('the reader scrolls sideways: ' + reader.scrollWidth + ' px');
  }
  return problems;
}"""


@pytest.mark.parametrize("width", [390, 1280])
def test_every_page_runs_clean_fits_its_column_and_is_photographed(
    browser, server, width
):
    """No page logs a JavaScript error. At a desktop's width no code, output,
    equation, table or image is wider than its column; at a phone's the page never
    scrolls sideways and only code, equations and tables scroll, inside their own
    box, saying so. A full-page screenshot of every page at this width lands in
    _build/screenshots/<width>/."""
    pg = new_reader(browser, server, width)
    shots = SHOTS / str(width)
    shots.mkdir(parents=True, exist_ok=True)
    problems = []
    for doc in toc_pages():
        open_page(pg, f"{server}/{doc}.html")
        pg.wait_for_timeout(200)
        assert pg.errors == [], f"{doc} at {width} px: console errors {pg.errors}"
        problems += [f"{doc}: {p}" for p in pg.evaluate(LAYOUT_JS, width < 992)]
        name = doc.replace("/", "__") + ".jpg"
        pg.screenshot(path=str(shots / name), full_page=True, type="jpeg", quality=60)
    pg.context.close()
    assert not problems, f"at {width} px:\n" + "\n".join(problems)


# ------------------------------------------------------------------ figures and links

CHAPTERS = [p for p in toc_pages() if re.match(r"notebooks/\d\d_", p)]

FIGURES_JS = """() => [...document.querySelectorAll('article img')].map(img => {
  const fig = img.closest('figure');
  const caption = fig && fig.querySelector('figcaption');
  return {
    src: img.src.split('/').pop(),
    alt: img.alt,
    number: caption ? (caption.querySelector('.caption-number') || {}).innerText : null,
    caption: caption ? caption.innerText : '',
    referenced: fig && fig.id
      ? document.querySelectorAll(`a[href="#${fig.id}"]`).length : 0,
    shown: img.clientWidth,
    natural: img.naturalWidth,
  };
})"""


@pytest.fixture(scope="module", params=[390, 1280], ids=["390px", "1280px"])
def reader(request, browser, server):
    """A page at a phone's or a desktop's width, shared by the per-chapter checks."""
    pg = new_reader(browser, server, request.param)
    pg.width = request.param
    yield pg
    pg.context.close()


@pytest.mark.parametrize("doc", CHAPTERS)
def test_every_figure_is_numbered_captioned_described_referenced_and_legible(
    reader, server, doc
):
    open_page(reader, f"{server}/{doc}.html")
    figures = reader.evaluate(FIGURES_JS)
    assert figures, f"{doc} shows no figure"
    for f in figures:
        where = f"{doc}, {f['src']}"
        assert f["number"] and re.match(r"Fig\. \d+", f["number"]), (
            f"{where}: not a numbered figure"
        )
        assert len(f["caption"]) > len(f["number"]) + 10, f"{where}: no caption"
        assert f["alt"].strip(), f"{where}: no alt text"
        assert f["referenced"], f"{where}: the text never refers to {f['number']}"
        # 150 dpi images: natural / 150 inches of figure are shown in `shown` pixels;
        # 10-point text then measures shown / inches * 10 / 72 CSS pixels. On a
        # phone the figure fills the screen's width and the reader zooms.
        text_px = f["shown"] / (f["natural"] / 150) * 10 / 72
        if reader.width >= 992:
            assert text_px >= 9.5, f"{where}: 10-point text shown {text_px:.1f} px"
        else:
            assert f["shown"] >= 0.8 * 358 or f["shown"] >= f["natural"] / 1.6, (
                f"{where}: shown {f['shown']} px wide on a phone"
            )


LINKS_JS = """(own) => {
  const article = document.querySelector('article.bd-article');
  const stop = article.querySelector(
    'section#check-your-understanding, section#exercises, section#references');
  const plain = [];
  const walker = document.createTreeWalker(article, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    if (stop && (stop.contains(node) || (stop.compareDocumentPosition(node)
        & Node.DOCUMENT_POSITION_FOLLOWING))) break;
    const parent = node.parentElement;
    const skip = 'a, code, pre, .math, mjx-container, h1, h2, h3, h4, figcaption';
    if (parent.closest(skip)) continue;
    for (const m of node.textContent.matchAll(/\\b[Cc]hapter (\\d+)\\b/g)) {
      const n = Number(m[1]);
      const context = node.textContent.trim().slice(0, 80);
      if (n !== own && n <= 14) plain.push(m[0] + ': "' + context + '"');
    }
  }
  return {
    plain,
    glossary: article.querySelectorAll('a[href*="glossary.html#term-"]').length,
    numbered: article.querySelectorAll('span.eqno').length,
    eqrefs: article.querySelectorAll('a[href*="#equation-"]').length,
  };
}"""


@pytest.mark.parametrize("doc", CHAPTERS)
def test_chapter_links_glossary_terms_and_numbered_equations(reader, server, doc):
    open_page(reader, f"{server}/{doc}.html")
    own = int(re.search(r"/(\d\d)_", doc).group(1))
    found = reader.evaluate(LINKS_JS, own)
    assert not found["plain"], (
        f"{doc}: chapter mentions without a link: {found['plain']}"
    )
    assert found["glossary"] >= 3, f"{doc}: {found['glossary']} links into the glossary"
    assert found["numbered"] >= 1, f"{doc}: no numbered equation"
    assert found["eqrefs"] >= 1, f"{doc}: no equation is referred to by its number"


def test_setup_page_gives_the_address_from_the_config(reader, server):
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    url = config["sphinx"]["config"]["html_theme_options"]["repository_url"]
    open_page(reader, f"{server}/book/setup.html")
    text = reader.inner_text("article")
    assert f"git clone {url}" in text and "pip install -e ." in text
    assert "<this repository>" not in text and "{{" not in text


def test_benchmarks_appendix_reads_as_a_page_for_readers(reader, server):
    open_page(reader, f"{server}/book/benchmarks.html")
    text = reader.inner_text("article")
    assert reader.eval_on_selector_all("article table", "t => t.length") >= 3
    assert reader.eval_on_selector_all("article mjx-container", "m => m.length") >= 1
    assert re.search(r"(?i)machine|processor|CPU", text)
    # no internal report left: no Python lists of lengths, no plain-text formulas
    assert not re.search(r"\[\d+(, \d+)*\]", text), "a Python list in the prose"
    assert "C^2" not in text and "Met at" not in text
