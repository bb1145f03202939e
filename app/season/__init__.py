"""Build side of Sure2: turn inputs into a season directory (the contract app.sure2.season reads).

Never part of the sealed sure2.sif: `synth` (a generated season with ground truth) and the importers
of real inputs live here, and only their output, the season directory, is embedded in the image.
"""
