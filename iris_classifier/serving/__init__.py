"""What the service needs at request time: middlewares, OpenAPI fixes, settings, the BentoML compat module,
the Open Inference Protocol (V2), the prediction log, the lazily built UI, status metrics.

May import: registry, model, data, domain, project. Packed into the Bento (bentofile.yaml).
"""
