"""Watching the served model: input drift against the training split, dashboard queries, synthetic traffic.

May import: serving (the prediction log's files), registry, model, data, domain, project. Never in the image.
"""
