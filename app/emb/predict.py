"""Sliding-window inference over a whole embedding raster → uint8 class-map GeoTIFF.

Windows of the training chip size step by chip * (1 - overlap), plus one aligned to each far edge;
softmax probabilities of overlapping windows are summed (argmax of the mean), so window seams do not show. The output
has the input's CRS, transform and shape, classes 0..K-1, and 255 (nodata) where the input is masked.
A raster smaller than a chip is zero-padded for inference and cropped back.
"""

from pathlib import Path

import numpy as np

from app.emb import IGNORE
from app.errors import BadInput
from app.hpc.atomic import atomic_path


def _load_model(checkpoint, device):
    from app.emb import checkpoint as ckpt
    from app.emb.model import build_model

    try:
        _, state = ckpt.resolve(checkpoint)
    except (ValueError, OSError) as exc:
        raise BadInput(f"--checkpoint: {exc}") from None
    model = build_model(state["model_name"], state["classes"])
    model.load_state_dict(state["model"])
    return model.to(device).eval(), state


def predict(checkpoint, input_path, out, overlap: float = 0.25, batch: int = 8) -> Path:
    from app.emb.threads import setup_threads

    setup_threads()
    import rasterio
    import torch
    from app.emb import BANDS
    from app.emb.model import dequantise
    from app.emb.prepare import read_chip, window_offsets

    if not 0.0 <= overlap <= 0.9:
        raise BadInput(f"--overlap must be in [0, 0.9], got {overlap}")
    if batch < 1:
        raise BadInput(f"--batch must be >= 1, got {batch}")
    out = Path(out)
    if not out.parent.is_dir():
        raise BadInput(f"--out directory {out.parent} does not exist")
    try:
        src = rasterio.open(input_path)
    except rasterio.errors.RasterioIOError as exc:
        raise BadInput(f"cannot read --input {input_path}: {str(exc).splitlines()[0]}") from None
    with src:
        if src.count != BANDS:
            raise BadInput(f"--input has {src.count} bands, expected {BANDS}")
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        model, state = _load_model(checkpoint, device)
        chip, classes = state["chip"], state["classes"]
        h, w = src.height, src.width
        win_h, win_w = min(chip, h), min(chip, w)
        stride = max(1, int(chip * (1 - overlap)))
        windows = [(r, c) for r in window_offsets(h, win_h, stride) for c in window_offsets(w, win_w, stride)]
        probs = np.zeros((classes, h, w), np.float32)
        with torch.no_grad(), torch.autocast(device.type, torch.bfloat16, enabled=device.type == "cuda"):
            for i in range(0, len(windows), batch):
                group = windows[i:i + batch]
                x = np.zeros((len(group), BANDS, chip, chip), np.int8)  # zero-padded when the raster is small
                for j, (r, c) in enumerate(group):
                    x[j, :, :win_h, :win_w] = read_chip(src, r, c, win_h, win_w)
                logits = model(dequantise(torch.from_numpy(x).to(device)))
                p = torch.softmax(logits.float(), 1).cpu().numpy()
                for j, (r, c) in enumerate(group):
                    probs[:, r:r + win_h, c:c + win_w] += p[j, :, :win_h, :win_w]
        class_map = probs.argmax(0).astype(np.uint8)
        class_map[src.read_masks(1) == 0] = IGNORE
        profile = dict(driver="GTiff", width=w, height=h, count=1, dtype="uint8", crs=src.crs,
                       transform=src.transform, nodata=IGNORE, compress="deflate")
        if h >= 256 and w >= 256:
            profile.update(tiled=True, blockxsize=256, blockysize=256)
    with atomic_path(out) as tmp:
        with rasterio.open(tmp, "w", **profile) as dst:
            dst.write(class_map, 1)
            dst.update_tags(checkpoint_step=str(state["step"]), model=state["model_name"], classes=str(classes))
    return out
