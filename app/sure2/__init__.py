"""Sure2 crop-insurance field assessment: one insured field in, one Parquet assessment out.

This file and __main__.py stay plain Python; every other module here is compiled by setup.py.
"""
