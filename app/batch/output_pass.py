"""The season report's one pass over the outputs: each valid output is read once
(app.sure2.output.read_output, which checks it on the same read) and what it says feeds every product:
the rows' summaries, the area units' curves, the damage maps' patches and each field's evidence on the
page (app.batch.page). Outputs checked in full while the rows were made are handed over by the
OutputIndex (its `on_read`), the trusted ones are read here; none is read twice.

Error policy, one for all products: an output that vanished or tore after it was verified (a user's
`rm`, a quota-truncated copy, bit rot) is a noted row — state `remaining`, reason "output lost since
verified: <why>", so the next run redoes it — never an error of the report.
"""

import heapq
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor

from app.sure2.outcome import ASSESSED, STATUSES

LOST = "output lost since verified"
READ_BATCH = 2048  # outputs in flight at once (bounded memory at a million fields)


class OutputPass:
    def __init__(self, season, checker, units: bool, evidence_limit: int | None = None, keep_other_settings=False):
        """evidence_limit: keep the evidence of every field (None) or of the largest payouts only."""
        self.season, self.checker = season, checker
        self.units, self.evidence_limit, self.keep = units, evidence_limit, keep_other_settings
        self._largest = []  # (amount_cents, field) heap of the kept evidence, with a limit
        self.reads = Counter()  # field -> times its output was read by the report (1 for every valid output)
        self.curves = {}  # assessed field -> app.sure2.units.FieldCurve (seasons with area units only)
        self.patches = defaultdict(list)  # stack -> [(row0, col0, classes, date index)]
        self.evidence = {}  # field -> its evidence for the page (app.batch.page.evidence_of)
        self.shares = {}  # paid field -> its payout's share of the insured sum (the recorded fraction)
        self.lost = {}  # field -> why its output no longer reads
        self._area: dict | None = None

    def take(self, fid: str, read) -> None:
        """Hand one output's parts to every product (the OutputIndex calls this for what it read)."""
        from app.batch.page import evidence_of

        self.reads[fid] += 1
        if read.status == ASSESSED:
            payout = read.blobs["payout"] or {}
            if payout.get("amount_cents"):
                self.shares[fid] = payout["fraction"]
            patch = read.damage_patch()
            if patch is not None:
                self.patches[patch[0]].append(patch[1])
            if self.units:
                self.curves[fid] = self._curve(fid, read)
        if self.evidence_limit is None:
            self.evidence[fid] = evidence_of(read)
            return
        cents = (read.blobs["payout"] or {}).get("amount_cents") or 0
        if cents and (len(self._largest) < self.evidence_limit or (cents, fid) > self._largest[0]):
            self.evidence[fid] = evidence_of(read)
            heapq.heappush(self._largest, (cents, fid))
            if len(self._largest) > self.evidence_limit:
                del self.evidence[heapq.heappop(self._largest)[1]]

    def finish(self, rows: dict) -> None:
        """Read every valid output not read yet (those the journal vouched for), once; a lost one becomes
        a noted row in `rows`."""
        from app.hpc.cores import physical_cores
        from app.sure2.output import OutputProblem

        def read(fid):
            try:
                return fid, self.checker.read(fid, check_settings=not self.keep), None
            except OutputProblem as problem:
                return fid, None, str(problem)

        todo = [fid for fid in self.season.field_ids
                if fid in rows and rows[fid]["state"] in STATUSES and fid not in self.reads]
        # pyarrow decodes without the GIL: reads overlap on the cores the finished batch left free
        with ThreadPoolExecutor(max(1, physical_cores())) as pool:
            for start in range(0, len(todo), READ_BATCH):
                for fid, output, why in pool.map(read, todo[start:start + READ_BATCH]):
                    if output is None:
                        self.lost[fid] = why
                        rows[fid] = {"state": "remaining", "reason": f"{LOST}: {why}", "failures": 0}
                    else:
                        self.take(fid, output)

    def _curve(self, fid: str, read):
        from app.sure2.units import day_numbers, field_curve

        if self._area is None:
            self._area = dict(zip(self.season.field_ids, self.season.columns(("area_ha",))["area_ha"]))
        dates, smooth, baseline = read.curve()
        return field_curve(fid, self._area[fid], day_numbers(dates), smooth, baseline)
