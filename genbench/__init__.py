"""genbench: a benchmark and evaluation harness for deep generative image models.

The import packages are ``bench`` (the harness), ``baselines`` (model
families) and ``metrics``; this package holds what all three share
(:mod:`genbench.registry`).
"""
