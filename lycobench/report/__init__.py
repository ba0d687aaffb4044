"""Rebuild a sweep's report from its files alone: metric tables, the paper's analysis (normalised scores,
CIs, paired comparisons, CatBoost + SHAP), figures, image grids and report/index.html; lists the runs that
did not finish.

Rebuilding is cheap when nothing changed: the whole report is keyed by the content of its inputs (and this
code), and every figure and SHAP model by the content of its own inputs, in report/.cache.json.

Modules: build (the entry point), load (runs -> frames, training images), tables, cache, figures,
shap_figures, grids (which sheets), sheets (composing one, PIL), plots (matplotlib), page (index.html),
gallery (the page's grids and seed selector), headline, html_parts, published.
"""

from .build import build_report

__all__ = ["build_report"]
