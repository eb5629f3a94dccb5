"""The domain vocabulary: features, species, value bounds, request and response shapes.

Imports nothing else from the package: everything else may import it.
"""
