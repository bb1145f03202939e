"""EMB: crop-type segmentation from 64-band satellite embeddings.

synth (generated rasters + parcels with known classes) → prepare (a few large int8 shards) →
train (DDP under torchrun, atomic checkpoints, requeue on SIGUSR2/SIGTERM) → predict (class-map GeoTIFF).
"""

BANDS = 64
# Embeddings are unit-length vectors, so every component lies in [-1, 1]; int8 = round(x * 127).
QUANT_SCALE = 127.0
IGNORE = 255  # label of pixels that count neither in the loss nor in IoU (mixed boundary pixels)
NON_CROP = 0  # class 0 is "not a crop field" (roads, gaps, other land cover): a real, learned class
