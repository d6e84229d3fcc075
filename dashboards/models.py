"""User dashboards: an ordered grid of charts over data, shared with users or by link."""

import hashlib

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from dashboards.choices import Aggregation, ChartKind, SourceKind, TimeGrain


class DashboardQuerySet(models.QuerySet):
    def visible_to(self, user) -> "DashboardQuerySet":
        """What `user` may look at: everything for staff, else their own and shared ones."""
        if user.is_staff:
            return self.all()
        return self.filter(Q(owner=user) | Q(shared_with=user)).distinct()


class Dashboard(models.Model):
    """A titled, ordered grid of charts belonging to one user."""

    title = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="dashboards"
    )
    shared_with = models.ManyToManyField(
        settings.AUTH_USER_MODEL,
        blank=True,
        related_name="dashboards_shared_with_me",
        help_text="Users who may view it (only the owner and staff edit).",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = DashboardQuerySet.as_manager()

    class Meta:
        ordering = ["title", "pk"]

    def __str__(self):
        return self.title

    def get_absolute_url(self):
        return reverse("dashboards:detail", args=[self.pk])

    def can_edit(self, user) -> bool:
        return user.is_staff or self.owner_id == user.pk

    def can_view(self, user) -> bool:
        return self.can_edit(user) or self.shared_with.filter(pk=user.pk).exists()


class Chart(models.Model):
    """One chart of a dashboard: where its data comes from and how it is aggregated.

    The source fields mirror `aggregate.ChartSource` and the options `aggregate.ChartSpec`.
    """

    dashboard = models.ForeignKey(Dashboard, on_delete=models.CASCADE, related_name="charts")
    position = models.PositiveIntegerField(default=0)
    title = models.CharField(max_length=200, blank=True)
    kind = models.CharField(max_length=20, choices=ChartKind, default=ChartKind.BAR)

    source_kind = models.CharField(max_length=20, choices=SourceKind, default=SourceKind.DATASET)
    dataset = models.CharField(max_length=100, blank=True, help_text="A dataset's name.")
    dataset_version = models.PositiveIntegerField(
        null=True, blank=True, help_text="Empty: always the latest version."
    )
    pipeline = models.ForeignKey(
        "pipelines.Pipeline",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="Charts its latest successful run's predictions.",
    )
    datasource = models.CharField(max_length=100, blank=True, help_text="A data source's name.")
    table = models.CharField(max_length=200, blank=True)

    x = models.CharField(max_length=200, blank=True)
    y = models.JSONField(default=list, blank=True, help_text="Column names.")
    aggregation = models.CharField(max_length=20, choices=Aggregation, default=Aggregation.COUNT)
    time_grain = models.CharField(max_length=10, choices=TimeGrain, blank=True)
    group_by = models.CharField(max_length=200, blank=True)
    filters = models.JSONField(default=list, blank=True, help_text='Texts like "amount > 10".')
    sort = models.CharField(max_length=2, blank=True)
    limit = models.PositiveIntegerField(null=True, blank=True)
    stacked = models.BooleanField(default=False)

    class Meta:
        ordering = ["position", "pk"]

    def __str__(self):
        return self.title or f"{self.get_kind_display()} chart"

    def source_label(self) -> str:
        """Where the data comes from, in words: "Dataset sales, latest version"."""
        if self.source_kind == SourceKind.PREDICTIONS:
            name = self.pipeline.name if self.pipeline else "a deleted pipeline"
            return f"Predictions of {name}, latest successful run"
        if self.source_kind == SourceKind.TABLE:
            return f"Table {self.table} in {self.datasource}"
        version = f"version {self.dataset_version}" if self.dataset_version else "latest version"
        return f"Dataset {self.dataset}, {version}"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class ShareLinkQuerySet(models.QuerySet):
    def active(self) -> "ShareLinkQuerySet":
        unexpired = Q(expires_at__isnull=True) | Q(expires_at__gt=timezone.now())
        return self.filter(unexpired, revoked_at__isnull=True)


class ShareLink(models.Model):
    """A read-only link to one dashboard for people without an account.

    Only the token's SHA-256 is stored: the link is shown once, when it is made, and a
    leaked database does not open any dashboard.
    """

    dashboard = models.ForeignKey(Dashboard, on_delete=models.CASCADE, related_name="share_links")
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = ShareLinkQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self):
        return f"Share link #{self.pk} of {self.dashboard}"

    @property
    def state(self) -> str:
        if self.revoked_at:
            return "revoked"
        if self.expires_at and self.expires_at <= timezone.now():
            return "expired"
        return "active"
