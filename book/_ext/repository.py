"""The book's address, written once: ``html_theme_options.repository_url`` in
``_config.yml``.

Pages write ``{{ repository_url }}`` where the address belongs (the setup page's
``git clone`` line, inside a code block, where MyST substitutions do not reach); this
extension puts the configured address in before the page is parsed. A page that asks
for the address while none is configured fails the build with a message saying where
to set it.
"""

from __future__ import annotations

from sphinx.application import Sphinx
from sphinx.errors import ConfigError

PLACEHOLDER = "{{ repository_url }}"


def fill_in(source: str, url: str | None, docname: str) -> str:
    """``source`` with every placeholder replaced by ``url``."""
    if PLACEHOLDER not in source:
        return source
    if not url:
        raise ConfigError(
            f"{docname} needs the book's address: set html_theme_options."
            "repository_url under sphinx.config in _config.yml"
        )
    return source.replace(PLACEHOLDER, url.rstrip("/"))


def _source_read(app: Sphinx, docname: str, source: list[str]) -> None:
    url = (app.config.html_theme_options or {}).get("repository_url")
    source[0] = fill_in(source[0], url, docname)


def setup(app: Sphinx) -> dict:
    app.connect("source-read", _source_read)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
