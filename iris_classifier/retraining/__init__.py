"""Learning from production: the labelled feedback data set, champion vs challenger, and the retraining job.

May import: monitoring (the join of labels and the prediction log), serving, registry, model, data, domain,
project. Nothing in the package imports it but the harness.
"""
