"""Which outputs are valid, and what they say, without reading every file every time.

A full check reads the whole (small) file with page checksums (app.sure2.output.check_output). The
batch records, in its journal, each output's identity (size, mtime_ns, inode) when it knew the file
valid: the worker right after writing it, the planner after a full check. A file whose identity and
validity context (code version, data fingerprint, settings) still match what was recorded is trusted
without being read; anything else (changed, replaced, touched, another context) is checked in full.
`--verify full` checks every file in full regardless.
"""

import hashlib
import os
from pathlib import Path

VERIFIED_PER_RECORD = 2000  # entries per results record of newly verified outputs (keeps lines short)


def context_of(season, settings) -> str:
    """Hash of what makes an output valid for a run besides its own field."""
    from app.sure2.version import code_version

    text = "\0".join((code_version(), season.fingerprint, settings.canonical()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def identity(path) -> list | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return [st.st_size, st.st_mtime_ns, st.st_ino]


class OutputChecker:
    """Checks one field's output in full against the season, this code and these settings."""

    def __init__(self, season, out_dir, settings):
        from app.sure2.assess import expected
        from app.sure2.output import check_output

        self._check, self._expected = check_output, expected
        self.season, self.out, self.settings = season, Path(out_dir), settings
        self._prefix = os.path.join(str(out_dir), "")

    def path(self, fid: str) -> str:
        """OUT/<fid>.parquet for a catalogue field (a string: planning a million fields makes a million)."""
        return f"{self._prefix}{fid}.parquet"

    def problem(self, fid: str) -> str | None:
        """None when the output is valid, else why not."""
        return self._check(self.path(fid), self._expected(self.season, fid, self.settings))


def is_settings_problem(why: str) -> bool:
    return why.startswith("settings:")


class OutputIndex:
    """Validity of outputs from the journal's records where they still hold, else from a full check."""

    def __init__(self, checker: OutputChecker, state, context: str, full: bool = False, keep_other_settings=False):
        self.checker, self.state, self.context, self.full = checker, state, context, full
        self.keep_other_settings = keep_other_settings
        self.kept = []  # valid but for their settings, counted as done (--settings-change keep): never recorded
        self.verified = []  # (field, summary, identity) checked in full here and valid: to record
        self.fresh = {}  # field -> summary read from its footer here
        self.trusted = 0  # outputs taken as valid on their recorded identity

    def problem(self, fid: str) -> str | None:
        """None when fid's output is valid for this run, else why not ("missing" if there is none)."""
        path = self.checker.path(fid)
        ident = identity(path)
        if ident is None:
            return "missing"
        if not self.full and self.state.files.get(fid) == (self.context, *ident):
            self.trusted += 1
            return None
        why = self.checker.problem(fid)
        if why is None or (self.keep_other_settings and is_settings_problem(why)):
            from app.sure2.output import footer_summary  # pyarrow: after the workers' thread cap

            self.fresh[fid] = footer_summary(path)
            if why is None:
                self.verified.append((fid, self.fresh[fid], ident))
            else:
                self.kept.append(fid)
        return None if fid in self.fresh else why

    def summary(self, fid: str) -> dict:
        """What a valid output says (read here, else the journal's record, else its footer)."""
        known = self.fresh.get(fid) or self.state.summary.get(fid)
        if known is None:
            from app.sure2.output import footer_summary

            known = footer_summary(self.checker.path(fid))
        return known

    def records(self) -> list[dict]:
        """Journal records for the outputs verified here (then forgotten: record them once)."""
        out = [{"r": [[fid, None, summary, ident, self.context] for fid, summary, ident in
                      self.verified[i:i + VERIFIED_PER_RECORD]]}
               for i in range(0, len(self.verified), VERIFIED_PER_RECORD)]
        self.verified = []
        return out
