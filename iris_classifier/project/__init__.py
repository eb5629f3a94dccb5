"""Where the project lives and how its processes start: paths, params.yaml, the venv's defaults, process helpers.

Imports nothing else from the package: everything else may import it.
"""
