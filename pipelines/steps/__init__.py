"""Step types. Importing this package registers every one of them."""

from pipelines.steps import (  # noqa: F401
    cleaning,
    databases,
    extraction,
    features,
    prediction,
    preprocessing,
    publishing,
    timeseries,
    training,
    unsupervised,
)
