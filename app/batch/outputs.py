"""Which outputs are valid, and what they say, without reading every file every time.

A full check reads the whole (small) file with page checksums (app.sure2.output.read_output) and hands
what it read to whoever asked (the season report's one pass over outputs: app.batch.output_pass). The
batch records, in its journal, each output's identity (size, mtime_ns, inode) when it knew the file
valid: the worker right after writing it, the planner after a full check. A file whose identity and
validity context (code version, data fingerprint, settings) still match what was recorded is trusted
without being read; anything else (changed, replaced, touched, another context) is checked in full.
`--verify full` checks every file in full regardless.
"""

import hashlib
import os
from dataclasses import replace
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

        self._expected = expected
        self.season, self.out, self.settings = season, Path(out_dir), settings
        self._prefix = os.path.join(str(out_dir), "")

    def path(self, fid: str) -> str:
        """OUT/<fid>.parquet for a catalogue field (a string: planning a million fields makes a million)."""
        return f"{self._prefix}{fid}.parquet"

    def problem(self, fid: str) -> str | None:
        """None when the output is valid, else why not."""
        from app.sure2.output import OutputProblem  # pyarrow: after the workers' thread cap

        try:
            self.read(fid)
        except OutputProblem as problem:
            return str(problem)
        return None

    def read(self, fid: str, check_settings: bool = True):
        """The output read once and checked in full (app.sure2.output.OutputRead); OutputProblem if invalid.
        check_settings=False accepts another run's settings (still this field, code and season)."""
        from app.sure2 import output

        want = self._expected(self.season, fid, self.settings)
        if not check_settings:
            want = replace(want, settings=output.ANY_SETTINGS)
        return output.read_output(self.path(fid), want)


def is_settings_problem(why: str) -> bool:
    return why.startswith("settings:")


class OutputIndex:
    """Validity of outputs from the journal's records where they still hold, else from a full check."""

    def __init__(self, checker: OutputChecker, state, context: str, full: bool = False, keep_other_settings=False,
                 on_read=None):
        self.checker, self.state, self.context, self.full = checker, state, context, full
        self.on_read = on_read  # called with (field, OutputRead) for each output read here (valid or kept)
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
        why, read = self._read(fid)
        if read is not None:
            self.fresh[fid] = read.summary()
            if why is None:
                self.verified.append((fid, self.fresh[fid], ident))
            else:
                self.kept.append(fid)
            if self.on_read is not None:
                self.on_read(fid, read)
        return None if fid in self.fresh else why

    def _read(self, fid: str) -> tuple:
        """(why not valid, OutputRead when valid or kept for --settings-change keep)."""
        from app.sure2.output import OutputProblem

        try:
            return None, self.checker.read(fid)
        except OutputProblem as problem:
            why = str(problem)
        if not (self.keep_other_settings and is_settings_problem(why)):
            return why, None
        try:
            return why, self.checker.read(fid, check_settings=False)
        except OutputProblem as problem:
            return str(problem), None

    def summary(self, fid: str) -> dict:
        """What a valid output says (read here, else the journal's record, else its footer)."""
        known = self.fresh.get(fid) or self.state.summary.get(fid)
        if known is None:
            from app.sure2 import output

            known = output.footer_summary(self.checker.path(fid))
        return known

    def records(self) -> list[dict]:
        """Journal records for the outputs verified here (then forgotten: record them once)."""
        out = [{"r": [[fid, None, summary, ident, self.context] for fid, summary, ident in
                      self.verified[i:i + VERIFIED_PER_RECORD]]}
               for i in range(0, len(self.verified), VERIFIED_PER_RECORD)]
        self.verified = []
        return out
