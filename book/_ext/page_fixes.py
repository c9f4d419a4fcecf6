"""Small fixes to the pages Jupyter Book 1 writes.

sphinx-thebe registers its inline configuration script (``const THEBE_JS_URL = ...``)
each time the documents are read, and Jupyter Book reads them in two passes, so
every page carried the script twice; the second copy raised "Identifier
'THEBE_JS_URL' has already been declared" in every reader's console. This
extension keeps the first copy of any script that appears twice on a page.
"""

from __future__ import annotations

from sphinx.application import Sphinx


def _script_key(script) -> tuple:
    # The same file or inline body twice is one script, whatever priority each copy got.
    filename = getattr(script, "filename", script) or ""
    attributes = getattr(script, "attributes", {}) or {}
    return str(filename), attributes.get("body", "")


def _drop_repeated_scripts(app: Sphinx, pagename, templatename, context, doctree) -> None:
    scripts = context.get("script_files")
    if not scripts:
        return
    seen: set[tuple] = set()
    unique = []
    for script in scripts:
        key = _script_key(script)
        if key in seen:
            continue
        seen.add(key)
        unique.append(script)
    context["script_files"] = unique


def setup(app: Sphinx) -> dict:
    app.connect("html-page-context", _drop_repeated_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
