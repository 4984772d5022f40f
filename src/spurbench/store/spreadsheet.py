"""CSV cells a spreadsheet will not run: the CSV exports are meant to be opened in Excel.

A text cell starting with ``=``, ``+``, ``-`` or ``@`` (or a tab / carriage return) is read by
Excel, LibreOffice and Google Sheets as a formula, so a class or dataset name such as
``=HYPERLINK(...)`` would run when the file is opened (OWASP "CSV injection"). Such cells get a
leading ``'``, which spreadsheets show as text. Only strings are touched: numbers (also a
string that is just a number, like ``-3.5``) stay as they are; Parquet and JSON exports, read
by programs rather than spreadsheets, keep the raw values.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

__all__ = ["spreadsheet_safe"]

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _safe_cell(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(_FORMULA_START) and not _is_number(value):
        return "'" + value
    return value


def spreadsheet_safe(df: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``df`` whose text cells cannot start a spreadsheet formula."""
    out = df.copy()
    for col in out.columns:
        if out[col].dtype == object or pd.api.types.is_string_dtype(out[col]):
            out[col] = out[col].map(_safe_cell)
    return out
