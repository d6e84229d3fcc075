"""Step types. Importing this package registers every one of them."""

from pipelines.steps import (  # noqa: F401
    databases,
    extraction,
    prediction,
    preprocessing,
    training,
)
