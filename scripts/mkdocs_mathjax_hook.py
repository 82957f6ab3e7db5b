"""MkDocs hook: serve MathJax from the built site, so formulas render with no network.

MathJax 2.7.9 comes from the PyPI package ``jupyter-server-mathjax``, which ships MathJax's
static files inside it (``make docs`` installs it with ``--no-deps``: only the files are
needed, not the Jupyter server). After the build, its TeX input, HTML-CSS output, STIX-Web
fonts and English messages are copied to ``<site>/assets/mathjax/``; the pages load
``assets/mathjax/MathJax.js`` (mkdocs.yml), configured by ``assets/mathjax-config.js``.
Nothing is ever loaded from a CDN.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

from mkdocs.exceptions import PluginError

PACKAGE = "jupyter_server_mathjax"
#: Parts of the MathJax tree the pages do not use (other locales, the accessibility
#: extensions and their speech data), left out of the site.
SKIPPED = ("localization/[!e]*", "localization/e[!n]*", "extensions/a11y")


def mathjax_source() -> Path:
    """The folder of MathJax's static files inside the installed package."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or spec.origin is None:
        raise PluginError(
            "the docs serve MathJax locally from the PyPI package jupyter-server-mathjax: "
            "pip install --no-deps 'jupyter-server-mathjax==0.2.6' (make docs does it)"
        )
    return Path(spec.origin).parent / "static"


def on_post_build(config, **kwargs) -> None:
    source = mathjax_source()
    target = Path(config["site_dir"]) / "assets" / "mathjax"
    if target.exists():
        shutil.rmtree(target)

    def ignore(folder: str, names: list[str]) -> set[str]:
        relative = Path(folder).relative_to(source)
        return {name for name in names
                if any((relative / name).match(pattern) for pattern in SKIPPED)}

    shutil.copytree(source, target, ignore=ignore)
