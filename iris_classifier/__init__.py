"""Shared pieces of the Iris classifier project: schema, paths, data, model helpers."""
