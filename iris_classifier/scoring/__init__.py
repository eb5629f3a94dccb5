"""Offline scoring of files on Apache Spark with the service's model and predictor: the batch function (pandas in,
pandas out), the Spark job around it, which model to score with, the job's own venv and a standalone cluster.

May import: registry, model, data, domain, project.
"""
