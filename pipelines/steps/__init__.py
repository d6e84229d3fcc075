"""Step types. Importing this package registers every one of them."""

from pipelines.steps import extraction, prediction, preprocessing, training  # noqa: F401
