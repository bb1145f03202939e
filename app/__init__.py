"""Sealed geospatial ML for HPC clusters: Sure2 field assessment and EMB crop segmentation.

Everything Python runs inside an image (or, for development and tests, in the project's venv);
the host side needs only bash, Apptainer and Slurm.
"""

__version__ = "0.1.0"
