"""Sliding-window inference over a whole embedding raster → uint8 class-map GeoTIFF, in bounded memory.

Windows of the training chip size step by chip * (1 - overlap), plus one aligned to each far edge;
softmax probabilities of overlapping windows are summed (argmax of the mean), so seams do not show.

Memory does not grow with the raster: the image is swept one row of windows at a time. The sums
live in a rolling buffer of K × chip × width floats; when a row of windows is done, the rows above
the next row's top can receive no more windows, so they are turned into classes and handed to a
writer that emits whole 256-row strips of the tiled output. Input is read per group of `batch`
neighbouring windows, and GDAL's block cache is sized to the two rows of input tiles a row of windows
touches (each compressed tile is then decoded once, not once per window). Peak memory is the model
and its activations + that cache + K·chip·W·4 bytes; measured for 8192² in the README (bench/emb_predict.py).

Output: the input's CRS and shape, north-up with the input's north-up transform (a bottom-up input is
flipped, so both storage orders give the same file); classes 0..K-1, 255 where the input is nodata
(-128 in all bands, NaN for float exports, or masked). With `confidence`, band 2 holds the mean
probability of the chosen class × 254 (255 = nodata). Windows without a valid pixel are not run.
Tags: checkpoint step, model, classes and their names. Written atomically.
"""

from pathlib import Path

import numpy as np

from app.emb import BANDS, IGNORE
from app.emb.prepare import window_offsets
from app.errors import BadInput
from app.hpc.atomic import atomic_path

OUT_BLOCK = 256
READ_WIDTH = 2048
CONFIDENCE_SCALE = 254
MIN_CACHE = 64 << 20


def _load_model(checkpoint, device):
    from app.emb import checkpoint as ckpt
    from app.emb.model import build_model

    try:
        _, state = ckpt.resolve(checkpoint)
    except (ValueError, OSError) as exc:
        raise BadInput(f"--checkpoint: {exc}") from None
    model = build_model(state["model_name"], state["classes"], state["model_norm"])
    model.load_state_dict(state["model"])
    return model.to(device).eval(), state


def _cache_bytes(ds, win_h: int) -> int:
    """GDAL block cache for the input tiles one row of windows touches (two rows of tiles, typically)."""
    block_h, block_w = ds.block_shapes[0]
    tile_rows = -(-win_h // block_h) + 1
    tiles = tile_rows * -(-ds.width // block_w)
    return max(MIN_CACHE, int(tiles * block_h * block_w * ds.count * np.dtype(ds.dtypes[0]).itemsize * 1.25))


def _column_chunks(cols: list[int], win_w: int) -> list[list[int]]:
    """Window columns grouped so that each group's input is one read of about READ_WIDTH columns:
    few reads (each has a fixed cost: ~16k reads of one window batch each took 40 s for 8192²) and
    a bounded region (64 x chip x (READ_WIDTH + chip) bytes)."""
    chunks, current = [], []
    for c in cols:
        if current and c + win_w - current[0] > READ_WIDTH + win_w:
            chunks.append(current)
            current = []
        current.append(c)
    return chunks + [current]


class _StripWriter:
    """Collects finished output rows and writes them as whole OUT_BLOCK-row strips (tiled GeoTIFFs
    compress a block once; partial block writes would make GDAL rewrite it)."""

    def __init__(self, dst, bands: int, width: int):
        self.dst, self.width = dst, width
        self.buf = np.empty((bands, OUT_BLOCK, width), np.uint8)
        self.filled = 0
        self.row = 0

    def add(self, rows: np.ndarray) -> None:
        while rows.shape[1]:
            n = min(OUT_BLOCK - self.filled, rows.shape[1])
            self.buf[:, self.filled:self.filled + n] = rows[:, :n]
            self.filled += n
            rows = rows[:, n:]
            if self.filled == OUT_BLOCK:
                self.flush()

    def flush(self) -> None:
        from rasterio.windows import Window

        if self.filled:
            self.dst.write(self.buf[:, :self.filled], window=Window(0, self.row, self.width, self.filled))
            self.row += self.filled
            self.filled = 0


class _Sweep:
    """The rolling sums of one row of windows (rows [top, top + win_h) of the output)."""

    def __init__(self, model, device, classes: int, chip: int, win_h: int, win_w: int, width: int):
        import torch

        self.torch, self.model, self.device = torch, model, device
        self.chip, self.win_h, self.win_w = chip, win_h, win_w
        self.sums = np.zeros((classes, win_h, width), np.float32)
        self.count = np.zeros((win_h, width), np.uint16)
        self.valid = np.zeros((win_h, width), bool)

    def run_windows(self, region: np.ndarray, offsets: list[int], first_col: int) -> None:
        """region: int8 [64, win_h, w] read at column first_col; offsets: window columns inside it."""
        torch = self.torch
        from app.emb.quant import dequantise, nodata_pixels

        ok = ~nodata_pixels(region[:, :, offsets[0] - first_col:offsets[-1] + self.win_w - first_col])
        self.valid[:, offsets[0]:offsets[-1] + self.win_w] = ok
        todo = [c for c in offsets if ok[:, c - offsets[0]:c - offsets[0] + self.win_w].any()]
        if not todo:
            return
        x = np.zeros((len(todo), BANDS, self.chip, self.chip), np.int8)  # zero-padded when the raster is small
        for j, c in enumerate(todo):
            x[j, :, :self.win_h, :self.win_w] = region[:, :, c - first_col:c - first_col + self.win_w]
        with torch.no_grad(), torch.autocast(self.device.type, torch.bfloat16, enabled=self.device.type == "cuda"):
            logits = self.model(dequantise(torch.from_numpy(x).to(self.device)))
        p = torch.softmax(logits.float(), 1)[:, :, :self.win_h, :self.win_w].cpu().numpy()
        for j, c in enumerate(todo):
            self.sums[:, :, c:c + self.win_w] += p[j]
            self.count[:, c:c + self.win_w] += 1

    def finish(self, n: int, confidence: bool) -> np.ndarray:
        """The first n rows as uint8 [1 or 2, n, W], then the buffers move up by n rows."""
        sums = self.sums[:, :n]
        classes = sums.argmax(0).astype(np.uint8)
        invalid = ~self.valid[:n]
        classes[invalid] = IGNORE
        bands = [classes]
        if confidence:
            mean = sums.max(0) / np.maximum(self.count[:n], 1)
            conf = np.rint(mean * CONFIDENCE_SCALE).astype(np.uint8)
            conf[invalid] = IGNORE
            bands.append(conf)
        for buf in (self.sums, self.count, self.valid):
            buf[..., :-n, :] = buf[..., n:, :].copy()
            buf[..., -n:, :] = 0
        return np.stack(bands)


def predict(checkpoint, input_path, out, overlap: float = 0.25, batch: int = 8, confidence: bool = False) -> Path:
    from app.emb.threads import setup_threads

    setup_threads()
    import rasterio
    import torch

    from app.emb.raster import EmbeddingRaster

    if not 0.0 <= overlap <= 0.9:
        raise BadInput(f"--overlap must be in [0, 0.9], got {overlap}")
    if batch < 1:
        raise BadInput(f"--batch must be >= 1, got {batch}")
    out = Path(out)
    if not out.parent.is_dir():
        raise BadInput(f"--out directory {out.parent} does not exist")
    with EmbeddingRaster(input_path) as raster:
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        model, state = _load_model(checkpoint, device)
        chip, classes, grid = state["chip"], state["classes"], raster.grid
        h, w = grid.height, grid.width
        win_h, win_w = min(chip, h), min(chip, w)
        stride = max(1, int(chip * (1 - overlap)))
        rows, cols = window_offsets(h, win_h, stride), window_offsets(w, win_w, stride)
        bands = 2 if confidence else 1
        profile = dict(driver="GTiff", width=w, height=h, count=bands, dtype="uint8", crs=raster.crs,
                       transform=rasterio.Affine(*grid.transform), nodata=IGNORE, compress="deflate")
        if h >= OUT_BLOCK and w >= OUT_BLOCK:
            profile.update(tiled=True, blockxsize=OUT_BLOCK, blockysize=OUT_BLOCK)
        sweep = _Sweep(model, device, classes, chip, win_h, win_w, w)
        with rasterio.Env(GDAL_CACHEMAX=_cache_bytes(raster.ds, win_h)), atomic_path(out) as tmp:
            with rasterio.open(tmp, "w", **profile) as dst:
                writer = _StripWriter(dst, bands, w)
                for i, r in enumerate(rows):
                    for chunk in _column_chunks(cols, win_w):
                        region = raster.read(r, chunk[0], win_h, chunk[-1] + win_w - chunk[0])
                        for g in range(0, len(chunk), batch):
                            sweep.run_windows(region, chunk[g:g + batch], chunk[0])
                    # no later window starts above the next row's top: the rows before it are final
                    done = (rows[i + 1] if i + 1 < len(rows) else h) - r
                    writer.add(sweep.finish(done, confidence))
                writer.flush()
                dst.update_tags(checkpoint_step=str(state["step"]), model=state["model_name"],
                                classes=str(classes), class_names=",".join(state["class_names"]))
                dst.set_band_description(1, "class")
                if confidence:
                    dst.set_band_description(2, f"confidence (mean probability x {CONFIDENCE_SCALE})")
    return out
