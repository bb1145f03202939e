"""EMB: crop-type segmentation from 64-band satellite embeddings.

synth (generated published-format rasters + parcels with crop codes and known classes) → prepare
(a few large int8 shards) → train (DDP under torchrun, atomic checkpoints, requeue on SIGUSR2/SIGTERM)
→ predict (class-map GeoTIFF, streamed in blocks).
"""

BANDS = 64  # unit-length vectors; their int8 form is the published one (app.emb.quant)
IGNORE = 255  # label of pixels that count neither in the loss nor in metrics (boundaries, nodata, ignored parcels)
NON_CROP = 0  # class 0 is "not a crop field" (roads, gaps, other land cover): a real, learned class
