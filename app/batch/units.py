"""The season's area-unit results: OUT/.batch/units.parquet, one row per unit contract, and units.txt.

For every contract in the season's units.parquet (app.sure2.units): the unit's fields are the
catalogue's fields of its region × crop; those assessed (valid outputs) give their curves (`date`,
`ndvi_smooth`, `baseline_mean`) and areas, and app.sure2.units.assess_units makes the units' index and
payout. A unit depends on all of its fields' outputs, so it is made again with every report (cheap:
one column read per field), written once per unit in one file. A season without unit contracts gets
no file.
"""

from collections import defaultdict

from app.hpc.atomic import atomic_path, atomic_write_bytes

PAYOUT_COLUMNS = {"index": "string", "terms": "string", "index_value": "float64", "trigger": "float64",
                  "exit": "float64", "trigger_percentile": "float64", "exit_percentile": "float64",
                  "percentile": "float64", "history_years": "int32", "fraction": "float64",
                  "insured_sum_cents": "int64", "amount_cents": "int64", "amount": "float64", "currency": "string"}
UNIT_COLUMNS = {"unit_id": "string", "region_id": "string", "crop": "string", "status": "string", "reason": "string",
                "detail": "string", "n_fields": "int32", "n_assessed": "int32", "area_ha": "float64",
                "assessed_area_ha": "float64"}


def schema():
    import pyarrow as pa  # pyarrow after the batch's thread caps

    return pa.schema([*((n, pa.type_for_alias(t)) for n, t in {**UNIT_COLUMNS, **PAYOUT_COLUMNS}.items()),
                      ("dates", pa.list_(pa.date32())), ("ndvi_smooth", pa.list_(pa.float64())),
                      ("baseline_mean", pa.list_(pa.float64()))])


def unit_results(season, rows: dict, out_dir) -> list[dict]:
    """Every unit contract's result from the assessed fields' outputs (app.sure2.units.assess_units)."""
    import pyarrow.parquet as pq  # pyarrow after the batch's thread caps

    from app.sure2.output import output_path
    from app.sure2.units import assess_units, day_numbers, field_curve, read_units

    if not read_units(season.data_dir):
        return []
    area = dict(zip(season.field_ids, season.columns(("area_ha",))["area_ha"]))
    curves = {}
    for fid in season.field_ids:
        if rows.get(fid, {}).get("state") == "assessed":
            t = pq.ParquetFile(output_path(out_dir, fid)).read(columns=["date", "ndvi_smooth", "baseline_mean"])
            column = lambda name, t=t: t.column(name).to_numpy(zero_copy_only=False)
            curves[fid] = field_curve(fid, area[fid], day_numbers(column("date")), column("ndvi_smooth"),
                                      column("baseline_mean"))
    return assess_units(season, curves)


def write_unit_results(season, rows: dict, layout) -> str:
    """Write units.parquet and units.txt; return a note."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    results = unit_results(season, rows, layout.out)
    if not results:
        return "no area-unit contracts in this season"
    records = [{**{k: v for k, v in r.items() if k != "payout"}, **{k: (r["payout"] or {}).get(k) for k in PAYOUT_COLUMNS}}
               for r in results]
    parquet, text = layout.root / "units.parquet", layout.root / "units.txt"
    with atomic_path(parquet) as tmp:
        pq.write_table(pa.Table.from_pylist(records, schema=schema()), tmp)
    atomic_write_bytes(text, render(records).encode())
    paid = [r for r in records if r["amount_cents"]]
    totals = defaultdict(int)
    for r in paid:
        totals[r["currency"]] += r["amount_cents"]
    money = ", ".join(f"{cur} {cents / 100:,.2f}" for cur, cents in sorted(totals.items())) or "nothing"
    return f"area units {parquet} ({len(records)} units, {len(paid)} paid, {money})"


def render(records: list) -> str:
    lines = [f"{'unit':32s} {'status':18s} {'fields':>9s} {'index':>8s} {'pctile':>7s} {'payout':>14s}"]
    for r in records:
        index = f"{r['index_value']:.4f}" if r["index_value"] is not None else "-"
        pct = f"{r['percentile']:.1f}" if r["percentile"] is not None else "-"
        pay = f"{r['amount']:,.2f} {r['currency']}" if r["amount"] is not None else r["reason"]
        lines.append(f"{r['unit_id']:32s} {r['status']:18s} {r['n_assessed']:>4d}/{r['n_fields']:<4d} {index:>8s} "
                     f"{pct:>7s} {pay:>14s}")
    return "\n".join(lines) + "\n"
