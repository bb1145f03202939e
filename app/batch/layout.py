"""Where the batch keeps its own files: OUT/.batch/ (hidden, so `ls OUT/*.parquet` sees outputs only).

  journal.log        claims, heartbeats, attempts and outcomes of every run (see state.py)
  invalid/           invalid outputs moved aside for inspection: FIELD.parquet.<UTC stamp>
  report.json        the season's report (every field, all runs so far); report.txt the same for people
  payout_map.png     the fields coloured by payout and outcome
  season_result.parquet / .gpkg   the season's result as a vector layer (GeoParquet; GeoPackage where possible)
"""

import os
import time
from pathlib import Path

from app.hpc.atomic import TMP_MARK, is_temp_name

OUTPUT_SUFFIX = ".parquet"


class BatchLayout:
    def __init__(self, out_dir):
        self.out = Path(out_dir)
        self.root = self.out / ".batch"
        self.journal = self.root / "journal.log"
        self.invalid = self.root / "invalid"
        self.report_json = self.root / "report.json"
        self.report_txt = self.root / "report.txt"
        self.payout_map = self.root / "payout_map.png"
        self.result_parquet = self.root / "season_result.parquet"
        self.result_gpkg = self.root / "season_result.gpkg"

    def create(self) -> None:
        self.invalid.mkdir(parents=True, exist_ok=True)

    def move_aside(self, path) -> Path:
        """Move an invalid output into invalid/ (same filesystem: a rename, never a copy)."""
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        target = self.invalid / f"{os.path.basename(path)}.{stamp}.{os.getpid()}"
        os.replace(path, target)
        return target


def field_of_temp(name: str) -> str | None:
    """The field whose output a temp file was going to become (".F.parquet.tmp.PID.HEX" -> "F")."""
    if not is_temp_name(name):
        return None
    target = name[1 : name.index(TMP_MARK)]
    return target[: -len(OUTPUT_SUFFIX)] if target.endswith(OUTPUT_SUFFIX) else None
