"""The HTML building blocks of the report page: numbers, CIs, tables, anchors."""

from __future__ import annotations

import math
from html import escape

import pandas as pd


def fmt(v, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e6:
        return str(int(v))
    if isinstance(v, float):
        return f"{v:.{digits}g}" if abs(v) >= 1000 or (v != 0 and abs(v) < 1e-3) else f"{v:.{digits}f}"
    return escape(str(v))


def ci(mean, lo, hi) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "–"
    if lo == hi:
        return f"{mean:.2f}"
    return f"{mean:.2f} <small>[{lo:.2f}, {hi:.2f}]</small>"


def table(df: pd.DataFrame, left: tuple[str, ...] = (), raw_html: tuple[str, ...] = ()) -> str:
    """A plain HTML table; columns in ``raw_html`` hold markup already, every other value is escaped."""
    if df.empty:
        return "<p class='note'>(empty)</p>"
    head = "".join(f"<th class='{'l' if c in left else ''}'>{escape(str(c))}</th>" for c in df.columns)
    body = []
    for row in df.itertuples(index=False):
        cells = []
        for c, v in zip(df.columns, row):
            text = str(v) if c in raw_html else fmt(v)
            cells.append(f"<td class='{'l' if c in left else ''}'>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<div class='scroll'><table><tr>{head}</tr>{''.join(body)}</table></div>"


def anchor(*parts) -> str:
    return "-".join("".join(ch if ch.isalnum() else "_" for ch in str(p)) for p in parts)
