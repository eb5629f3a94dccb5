"""What the service needs at request time: the answers it builds (answers), the batch body's fast read (batch_body),
middlewares, OpenAPI fixes, settings, the BentoML compat module (every private BentoML use, and only there), the
Open Inference Protocol over REST and gRPC (v2/), the prediction log, the feedback store, the lazily built UI,
status metrics.

May import: registry, model, data, domain, project. Packed into the Bento (bentofile.yaml).
"""
