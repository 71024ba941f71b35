"""Drift detection: reference profiles of training data, a sliding window of live inputs
and predictions, and the statistics that compare the two (docs/drift.md).

Kept free of imports here so that ``serinus`` subcommands that only register the
``profile`` parser do not pay for numpy.
"""
