"""The domain vocabulary shared by pipeline, service and demo: features, species, bounds, payloads."""

from __future__ import annotations

import operator
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field
from typing_extensions import TypedDict

FEATURES: tuple[str, ...] = ("sepal_length", "sepal_width", "petal_length", "petal_width")
FEATURE_LABELS: dict[str, str] = {
    "sepal_length": "Sepal length (cm)",
    "sepal_width": "Sepal width (cm)",
    "petal_length": "Petal length (cm)",
    "petal_width": "Petal width (cm)",
}
SPECIES: tuple[str, ...] = ("setosa", "versicolor", "virginica")
TARGET = "species"
MODEL_NAME = "iris_classifier"

# Physical bound for validation: no iris sepal or petal comes near half a metre.
MAX_MEASUREMENT_CM = 50.0
# Largest batch one /classify_batch request may carry.
MAX_BATCH_FLOWERS = 10_000

Measurement = Annotated[
    float,
    Field(
        gt=0,
        le=MAX_MEASUREMENT_CM,
        allow_inf_nan=False,
        strict=True,
        description=f"in cm; a finite number > 0 and <= {MAX_MEASUREMENT_CM:g}",
    ),
]

# Fisher's first flower of each species (rows 0, 50 and 100 of the dataset): docs, demo and tests use them.
EXAMPLE_FLOWERS: dict[str, dict[str, float]] = {
    "setosa": {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2},
    "versicolor": {"sepal_length": 7.0, "sepal_width": 3.2, "petal_length": 4.7, "petal_width": 1.4},
    "virginica": {"sepal_length": 6.3, "sepal_width": 3.3, "petal_length": 6.0, "petal_width": 2.5},
}
EXAMPLE_FLOWER = EXAMPLE_FLOWERS["setosa"]


# Flower -> (sepal_length, ..., petal_width) in FEATURES order; a C-level getter.
MEASUREMENTS_OF = operator.attrgetter(*FEATURES)
# The same for a FlowerFields dict; cheap on 10,000 flowers.
MEASUREMENTS_IN = operator.itemgetter(*FEATURES)


class Flower(BaseModel):
    """Four measurements of one iris flower, in centimetres."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"example": EXAMPLE_FLOWER})

    sepal_length: Measurement
    sepal_width: Measurement
    petal_length: Measurement
    petal_width: Measurement

    def as_row(self) -> tuple[float, ...]:
        return MEASUREMENTS_OF(self)


# One flower of a /classify_batch request: Flower's fields and rules, validated into a plain dict
# (validating 10,000 of these takes half the time of building 10,000 Flower objects). Its schema is
# documented as "Flower", with Flower's description and example.
FlowerFields = TypedDict("Flower", dict.fromkeys(FEATURES, Measurement))  # type: ignore[misc]
FlowerFields.__doc__ = Flower.__doc__
FlowerFields.__pydantic_config__ = Flower.model_config  # type: ignore[attr-defined]


class Prediction(BaseModel):
    """What the service answers for one flower."""

    species: Literal[SPECIES] = Field(description="the most probable species")
    probabilities: dict[str, float] = Field(description="probability per species; they sum to 1")
    model_version: str = Field(description="tag of the model in the BentoML store")
    warnings: list[str] = Field(
        default_factory=list,
        description="measurements outside the range seen in training (the prediction is less certain)",
    )
