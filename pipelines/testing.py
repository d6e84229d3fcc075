"""Step types for exercising workers and measuring the engine, not for analysis.

Register them with MLOPS_STEP_MODULES=pipelines.testing (the worker tests and the
queue benchmark do).
"""

import time

import pandas as pd
from pydantic import Field

from pipelines.choices import StepKind
from pipelines.engine.registry import StepParams, StepType, register


class SleepParams(StepParams):
    seconds: float = Field(ge=0, le=3600)
    rows: int = Field(3, ge=0, description="Rows of the small frame it produces.")


@register
class Sleep(StepType):
    """Wait, then produce a small frame: a step that takes a known time."""

    slug = "sleep"
    kind = StepKind.EXTRACTION
    label = "Sleep (diagnostic)"
    Params = SleepParams
    requires = ()

    def run(self, context, params: SleepParams, log):
        time.sleep(params.seconds)
        context["data"] = pd.DataFrame({"value": range(params.rows)})
        return context


@register
class Noop(StepType):
    """Pass the context through unchanged: measures the engine's cost per step."""

    slug = "noop"
    kind = StepKind.PREPROCESSING
    label = "No-op (diagnostic)"
    requires = ()
    produces = ()

    def run(self, context, params, log):
        return context
