"""How a worker assesses a chunk of claimed fields. Each backend yields one outcome record per field:
{"ok": id, "sec": s, "s": summary} | {"fail": id, "why": ...} | {"bad": id, "why": ...},
and raises StopBatch when the storage or the environment is unusable (disk full, quota, no data):
retrying other fields cannot help then.

- inproc:    the assessment runs inside the worker process; the season is opened once per worker.
- command:   one process per chunk, `PREFIX --ids-from -`, IDs on stdin, one JSON line per ID out.
  apptainer: the command backend with PREFIX = `apptainer run --containall --cleanenv
             --bind OUT:/out [--bind TMP:/tmp] SIF` (runscript: `python -m app.sure2 assess "$@"`),
             so one container start-up is shared by a whole chunk.
"""

import errno
import json
import subprocess
import sys
import threading
import time

from app.errors import EXIT_ENVIRONMENT, ITEM_BAD, STOP_ALL, is_storage_error, item_failure


class StopBatch(Exception):
    """The whole batch must stop (exit 3); the message says why and what to do."""


_STORAGE_WHAT = {errno.ENOSPC: "disk full", errno.EDQUOT: "disk quota exceeded", errno.EROFS: "read-only filesystem"}


def storage_message(exc: OSError, out_dir) -> str:
    what = _STORAGE_WHAT.get(exc.errno or 0, "storage failure")
    return (
        f"stopped: {what} under {out_dir} ({_one_line(exc)}); finished outputs are kept and valid: "
        "free space or raise the quota, then rerun to resume"
    )


class InprocBackend:
    def __init__(self, data_dir, out_dir, settings):
        from app.sure2.assess import assess_to_file
        from app.sure2.season import Season

        self.out, self.settings = out_dir, settings
        self._assess = assess_to_file
        self.season = Season.open(data_dir)

    def run(self, fields):
        for fid in fields:
            t0 = time.perf_counter()
            try:
                summary = self._assess(self.season, fid, self.out, self.settings)
            except Exception as exc:
                kind = item_failure(exc)
                if kind == STOP_ALL:
                    raise StopBatch(storage_message(exc, self.out) if is_storage_error(exc)
                                    else f"stopped: {exc}") from exc
                yield {kind: fid, "why": str(exc) if kind == ITEM_BAD else _one_line(exc)}
            else:
                yield {"ok": fid, "sec": round(time.perf_counter() - t0, 6), "s": _summary(summary)}

    def close(self):
        self.season.close()


class CommandBackend:
    """Outcomes are yielded as the command prints each field's line, so the worker reports progress
    per field (app.batch.watch) even inside a chunk; a field's `sec` is the time since the previous
    line (the first field of a chunk includes the container's start-up)."""

    def __init__(self, prefix: list[str], out_dir, env=None):
        self.prefix, self.out, self.env = list(prefix), out_dir, env

    def run(self, fields):
        if not fields:
            return
        proc = subprocess.Popen(self.prefix + ["--ids-from", "-"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=self.env)
        stderr = []
        reader = threading.Thread(target=lambda: stderr.extend(proc.stderr), daemon=True)  # never blocks the pipe
        reader.start()
        try:
            proc.stdin.write("".join(f + "\n" for f in fields))
            proc.stdin.close()
        except BrokenPipeError:
            pass  # it died at once: its exit code and stderr tell why
        wanted, errors, t0 = set(fields), {}, time.perf_counter()
        for text in proc.stdout:
            line = _json_line(text)
            fid = line.get("field_id") if line else None
            if fid not in wanted:
                continue
            wanted.discard(fid)
            now = time.perf_counter()
            status, reason = line.get("status"), _one_line(line.get("reason", ""))
            if status == "ok":
                yield {"ok": fid, "sec": round(now - t0, 6), "s": _summary(line)}
            elif status == "bad_input":
                yield {"bad": fid, "why": reason}
            else:
                errors[fid] = reason  # storage or this field? the exit code says, at the end
            t0 = now
        returncode = proc.wait()
        reader.join()
        tail = stderr[-1].strip() if stderr else "no output"
        errors.update({fid: f"exit {returncode}: {tail}" for fid in fields if fid in wanted})
        if errors and returncode == EXIT_ENVIRONMENT:  # storage/data: not these fields' fault
            raise StopBatch(f"stopped: {self.prefix[0]} exited {EXIT_ENVIRONMENT}: {next(iter(errors.values()))}")
        for fid in fields:
            if fid in errors:
                yield {"fail": fid, "why": errors[fid]}

    def close(self):
        pass


def _json_line(text: str) -> dict | None:
    try:
        rec = json.loads(text)
    except ValueError:
        return None
    return rec if isinstance(rec, dict) and isinstance(rec.get("field_id"), str) else None


def _summary(line: dict) -> dict:
    """What the journal keeps of an assessment's summary line (the report sums payouts)."""
    from app.sure2.output import SUMMARY_KEYS

    return {k: line[k] for k in SUMMARY_KEYS if k in line}


def _one_line(exc) -> str:
    text = f"{type(exc).__name__}: {exc}" if isinstance(exc, BaseException) else str(exc)
    return " ".join(text.split())[:300]


def apptainer_prefix(image, out_dir, tmp_dir=None, apptainer="apptainer") -> list[str]:
    """`apptainer run` of the sealed image; data is embedded at /data, outputs land in OUT via /out."""
    cmd = [apptainer, "run", "--containall", "--cleanenv", "--bind", f"{out_dir}:/out"]
    if tmp_dir:
        cmd += ["--bind", f"{tmp_dir}:/tmp"]
    return cmd + [str(image)]


def sure2_cli_prefix(data_dir, out_dir) -> list[str]:
    """The same CLI as the image's runscript, from this Python (the command backend without a container)."""
    return [sys.executable, "-m", "app.sure2", "assess", "--data", str(data_dir), "--out", str(out_dir)]
