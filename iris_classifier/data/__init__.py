"""The data: reading, validating and writing the measurements table; the DVC remotes.

May import: domain, project.
"""
