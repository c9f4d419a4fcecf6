"""Small fixes to the pages Jupyter Book 1 writes.

NumPy 2 writes its scalars as ``np.float64(0.25)``, so a number glued straight from a
NumPy computation could not be formatted by myst-nb's ``{glue:text}`key:.1%```
("could not convert string to float"). The glue formatter here unwraps such a repr
to the plain number first; everything else is formatted exactly as before.

sphinx-thebe registers its inline configuration script (``const THEBE_JS_URL = ...``)
each time the documents are read, and Jupyter Book reads them in two passes, so
every page carried the script twice; the second copy raised "Identifier
'THEBE_JS_URL' has already been declared" in every reader's console. This
extension keeps the first copy of any script that appears twice on a page.
"""

from __future__ import annotations

import re

from sphinx.application import Sphinx

_NUMPY_SCALAR = re.compile(
    r"^\s*(?:np|numpy)\.(?:float|int|uint|bool|complex)\w*\((.*)\)\s*$"
)


def plain_number(text: str) -> str:
    """``'np.float64(0.25)'`` -> ``'0.25'``; any other text unchanged."""
    match = _NUMPY_SCALAR.match(text)
    return match.group(1) if match else text


def _patch_glue_formatting() -> None:
    from myst_nb.core import variables
    from myst_nb.ext.glue import crossref, roles

    original = variables.format_plain_text
    if getattr(original, "unwraps_numpy", False):
        return

    def format_plain_text(text: str, fmt_spec: str) -> str:
        return original(plain_number(text), fmt_spec)

    format_plain_text.unwraps_numpy = True  # type: ignore[attr-defined]
    for module in (variables, roles, crossref):
        module.format_plain_text = format_plain_text


def _script_key(script) -> tuple:
    # The same file or inline body twice is one script, whatever priority each copy got.
    filename = getattr(script, "filename", script) or ""
    attributes = getattr(script, "attributes", {}) or {}
    return str(filename), attributes.get("body", "")


def _drop_repeated_scripts(
    app: Sphinx, pagename, templatename, context, doctree
) -> None:
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
    _patch_glue_formatting()
    app.connect("html-page-context", _drop_repeated_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
