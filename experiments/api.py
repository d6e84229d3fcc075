"""The online prediction API: POST records to a registered model, get its predictions.

The view only maps the outcomes of `experiments.serving.predict` to HTTP answers.
"""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from rest_framework import serializers, status
from rest_framework.exceptions import APIException, NotFound
from rest_framework.parsers import JSONParser
from rest_framework.permissions import BasePermission, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from experiments import serving, tracking
from experiments.throttling import PredictRateThrottle
from pipelines.api.errors import ErrorSerializer, ItemErrors
from pipelines.api.schema import ApiViewMixin


class InvalidRecords(ItemErrors):
    """Records the model cannot take: each problem with its record index and column."""

    default_code = "invalid_input"


class TrackingStoreDown(APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_code = "tracking_unavailable"


class CanPredict(BasePermission):
    message = (
        "Predicting needs the experiments.predict permission, "
        "or membership of the group this model's policy allows to predict."
    )

    def has_permission(self, request, view):
        return serving.may_predict(request.user, view.kwargs["name"])


class PredictRequestSerializer(serializers.Serializer):
    """Documentation only: the service checks the body against the model's signature."""

    records = serializers.ListField(
        child=serializers.DictField(), required=False, help_text="One object per record."
    )
    columns = serializers.DictField(
        child=serializers.ListField(), required=False, help_text="One list of values per column."
    )
    dataframe_split = serializers.DictField(
        required=False, help_text='MLflow\'s shape: {"columns": [...], "data": [[...], ...]}.'
    )


class PredictionSerializer(serializers.Serializer):
    model = serializers.CharField(help_text="Registered model name.")
    version = serializers.IntegerField(help_text="The version that served the predictions.")
    model_uri = serializers.CharField(help_text="models:/<name>/<version>, the version served.")
    predictions = serializers.ListField(
        child=serializers.DictField(),
        help_text="One object per record, in order, with the predict step's columns: "
        "`prediction` (a class, a number, a cluster, or true for an anomaly) and, for a "
        "classifier, `probability_<class>` for each class.",
    )


NAME = OpenApiParameter("name", OpenApiTypes.STR, OpenApiParameter.PATH, description="Model name.")
ALIAS = OpenApiParameter("alias", OpenApiTypes.STR, OpenApiParameter.PATH, description="Alias.")
VERSION = OpenApiParameter("version", OpenApiTypes.INT, OpenApiParameter.PATH)
EXAMPLES = [
    OpenApiExample(
        "Records",
        value={"records": [{"x1": 0.4, "x2": None, "colour": "red"}]},
        request_only=True,
    ),
    OpenApiExample(
        "Columns",
        value={"columns": {"x1": [0.4, 1.2], "x2": [-0.3, 0.8], "colour": ["red", "blue"]}},
        request_only=True,
    ),
    OpenApiExample(
        "A classifier's answer",
        value={
            "model": "churn",
            "version": 3,
            "model_uri": "models:/churn/3",
            "predictions": [{"prediction": 1, "probability_0": 0.18, "probability_1": 0.82}],
        },
        response_only=True,
        status_codes=["200"],
    ),
    OpenApiExample(
        "A wrong type",
        value={
            "code": "invalid_input",
            "message": "record 0, column 'x1': expected a number (double), got a string ('high')",
            "errors": [
                {
                    "record": 0,
                    "field": "x1",
                    "message": "expected a number (double), got a string ('high')",
                }
            ],
        },
        response_only=True,
        status_codes=["400"],
    ),
]


class PredictView(ApiViewMixin, APIView):
    permission_classes = [IsAuthenticated, CanPredict]
    parser_classes = [JSONParser]
    # One UPDATE of the caller's row (experiments.throttling) instead of DRF's
    # ScopedRateThrottle's four queries on the database cache; the same rate and 429.
    throttle_classes = [PredictRateThrottle]

    @extend_schema(
        request=PredictRequestSerializer,
        responses={
            200: PredictionSerializer,
            400: OpenApiResponse(
                ErrorSerializer,
                "The body is not one of the three shapes, is empty or has too many records, "
                "or a record lacks a column of the model's signature, has one it does not "
                "know, or a value of the wrong type (each with its `record` and `field`). "
                "null is accepted in any column: the model imputes it as it did in training.",
            ),
            503: OpenApiResponse(ErrorSerializer, "The MLflow tracking store cannot be reached."),
        },
        examples=EXAMPLES,
    )
    def post(self, request, name, alias=None, version=None):
        """Predict with a registered model, by alias (resolved on every request) or version.

        Send at most MLOPS_PREDICT_MAX_ROWS records, as `records`, `columns` or MLflow's
        `dataframe_split`; values are checked against the model's MLflow signature first.
        """
        try:
            answer = serving.predict(name, request.data, alias=alias, version=version)
        except tracking.ModelNotFound as exc:
            wanted = f"{name}@{alias}" if alias else f"{name} version {version}"
            raise NotFound(f"No model {wanted}: {exc}") from None
        except tracking.TrackingUnavailable as exc:
            raise TrackingStoreDown(str(exc)) from None
        except serving.InvalidInput as exc:
            raise InvalidRecords(str(exc), [_item(error) for error in exc.errors]) from None
        return Response(answer)


@extend_schema_view(
    post=extend_schema(operation_id="models_predict_by_alias", parameters=[NAME, ALIAS])
)
class PredictByAliasView(PredictView):
    pass


@extend_schema_view(
    post=extend_schema(operation_id="models_predict_by_version", parameters=[NAME, VERSION])
)
class PredictByVersionView(PredictView):
    pass


def _item(error: dict) -> dict:
    """serving's {record, column, message} as the API's error item."""
    return {"record": error["record"], "field": error["column"], "message": error["message"]}
