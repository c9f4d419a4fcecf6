"""Serve MathJax from the book itself so math renders without internet.

``tools/fetch_static.py`` places MathJax's single-file SVG bundle at
``_static/mathjax/tex-svg.js`` and ``_config.yml`` points ``mathjax_path`` at
it. Jupyter Book 1 also adds a ``<script>`` tag for every ``.js`` file under
``_static``, which would load MathJax a second time on every page; this
extension removes that duplicate and fails the build if the bundle is missing.
"""

from __future__ import annotations

from pathlib import Path

from sphinx.application import Sphinx
from sphinx.errors import ConfigError

BUNDLE = "mathjax/tex-svg.js"


def _drop_duplicate(app: Sphinx, config) -> None:
    config.html_js_files = [
        js
        for js in config.html_js_files
        if (js[0] if isinstance(js, tuple) else js) != BUNDLE
    ]
    if config.mathjax_path != BUNDLE:
        raise ConfigError(
            f"mathjax_path must be {BUNDLE!r} so the book renders math offline"
        )
    if not (Path(app.srcdir) / "_static" / BUNDLE).exists():
        raise ConfigError(
            f"_static/{BUNDLE} is missing; run `python tools/fetch_static.py` (make "
            "book does)"
        )


def setup(app: Sphinx) -> dict:
    app.connect("config-inited", _drop_duplicate, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
