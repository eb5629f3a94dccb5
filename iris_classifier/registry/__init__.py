"""The model registry (GTO versions and stages) and the Bento, the deployable bundle that carries a release;
and the image that carries it to a cluster: its references and digest record (published), what a deploy accepts
(signing: the signature policy), and its bill of materials (sbom).

May import: model, data, domain, project.
"""
