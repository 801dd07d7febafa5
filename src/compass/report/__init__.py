"""Reports: ``report.json`` (the :class:`Report` artifact) and the self-contained HTML page
rendered from it."""

from .artifact import Report
from .html import render_html

__all__ = ["Report", "render_html"]
