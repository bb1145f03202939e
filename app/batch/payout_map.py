"""PNG map of the season's fields coloured by payout (matplotlib, Agg backend).

matplotlib is optional (it is not in the runtime image's requirements): without it the map is
skipped with a clear note and the rest of the report stands.
"""

from pathlib import Path

FIELDS_FILE = "fields.parquet"


def draw_payout_map(data_dir, payouts: dict, target: Path) -> str:
    """Draw the map; return a one-line note saying where it went (or why not)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.collections import PolyCollection
    except ImportError:
        return "payout map skipped: matplotlib is not installed (pip install matplotlib)"
    import numpy as np
    import pyarrow.parquet as pq
    import shapely

    from app.hpc.atomic import atomic_path

    table = pq.read_table(Path(data_dir) / FIELDS_FILE, columns=["field_id", "geometry"]).to_pydict()
    shapes = shapely.from_wkb(table["geometry"])
    done, done_vals, missing = [], [], []
    for fid, shape in zip(table["field_id"], shapes):
        for ring in _exteriors(shape):
            (done if fid in payouts else missing).append(ring)
            if fid in payouts:
                done_vals.append(payouts[fid])

    fig, ax = plt.subplots(figsize=(8, 8), dpi=100)
    if missing:
        ax.add_collection(PolyCollection(missing, facecolor="#dddddd", edgecolor="none", label="no output"))
    if done:
        coll = PolyCollection(done, array=np.asarray(done_vals, float), cmap="viridis", edgecolor="none")
        ax.add_collection(coll)
        fig.colorbar(coll, ax=ax, shrink=0.7, label="payout")
    ax.autoscale_view()
    mid_lat = sum(ax.get_ylim()) / 2
    ax.set_aspect(1 / max(0.05, np.cos(np.radians(mid_lat))))  # metres look square at this latitude
    ax.set_xlabel("longitude")
    ax.set_ylabel("latitude")
    ax.set_title(f"Payout per field ({len(payouts)} assessed, grey: no valid output)")
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format="png", bbox_inches="tight")
    plt.close(fig)
    return f"payout map {target}"


def _exteriors(shape):
    import numpy as np

    parts = getattr(shape, "geoms", [shape])
    return [np.asarray(p.exterior.coords) for p in parts if not p.is_empty] if shape is not None else []
