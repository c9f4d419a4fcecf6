"""Put MathJax's single-file SVG bundle at ``_static/mathjax/tex-svg.js``.

The bundle comes from the ``sphinx-mathjax-offline`` package on PyPI (listed
in requirements.txt), so building the book needs the package index at install
time only, never a CDN while reading.
"""

from __future__ import annotations

import shutil
import sys
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEST = ROOT / "_static" / "mathjax" / "tex-svg.js"


def main() -> int:
    try:
        dist = metadata.distribution("sphinx-mathjax-offline")
    except metadata.PackageNotFoundError:
        print(
            "sphinx-mathjax-offline is not installed: pip install -r requirements.txt"
        )
        return 1
    source = Path(dist.locate_file("sphinx-mathjax-offline/static/mathjax/tex-svg.js"))
    if not source.exists():
        print(f"MathJax bundle not found at {source}")
        return 1
    if not DEST.exists() or DEST.stat().st_size != source.stat().st_size:
        DEST.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, DEST)
    return 0


if __name__ == "__main__":
    sys.exit(main())
