"""The model registry (GTO versions and stages) and the Bento, the deployable bundle that carries a release.

May import: model, data, domain, project.
"""
