"""The HTTP serving layer around the model: middlewares, the OpenAPI fixes, runtime settings, BentoML compat."""
