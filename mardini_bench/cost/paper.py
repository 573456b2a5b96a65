"""The paper's own numbers (Tables 2, 3 and 4), which cost's Table 3 and the reports print beside ours.

    paper = load_paper()        # results/paper/paper_tables.csv, or $MARDINI_BENCH_PAPER_TABLES
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import pandas as pd

from mardini_bench.io import DamagedFileError

PAPER_TABLES_ENV = "MARDINI_BENCH_PAPER_TABLES"
PAPER_FORM = "table,row_id,row_label,column,value,unit,note"
_DEFAULT_PAPER = Path(__file__).resolve().parents[2] / "results" / "paper" / "paper_tables.csv"


def load_paper(path: Optional[os.PathLike | str] = None) -> Optional[pd.DataFrame]:
    """The paper's numbers (table,row_id,row_label,column,value,unit,note); None if the file is absent.

    Looked up at `path`, else $MARDINI_BENCH_PAPER_TABLES, else the repository's results/paper/. A path
    given that does not exist, or a file that is not such a CSV, is a `DamagedFileError` naming it."""
    given = path or os.environ.get(PAPER_TABLES_ENV)
    candidate = Path(given or _DEFAULT_PAPER)
    if not candidate.exists():
        if given:
            raise DamagedFileError(f"{candidate}: no such file (the paper's numbers: {PAPER_FORM})")
        return None
    try:
        paper = pd.read_csv(candidate, dtype={"value": str}, keep_default_na=False)
    except (ValueError, UnicodeDecodeError, OSError):  # pandas' ParserError and EmptyDataError are ValueErrors
        paper = pd.DataFrame()
    if not {"table", "row_id", "row_label", "column", "value", "note"} <= set(paper.columns):
        raise DamagedFileError(f"{candidate}: not the paper's numbers; expected a CSV with columns {PAPER_FORM}")
    return paper
