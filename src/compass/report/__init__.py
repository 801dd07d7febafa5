"""Reports: a self-contained HTML page rendered from ``report.json``."""

from .html import render_html

__all__ = ["render_html"]
