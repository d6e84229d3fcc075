from django.contrib import admin

from dashboards import dashboards as services
from dashboards.models import Chart, Dashboard, ShareLink


class ChartInline(admin.TabularInline):
    model = Chart
    extra = 0
    fields = ("position", "title", "kind", "source_kind", "dataset", "pipeline", "x", "y")


class ShareLinkInline(admin.TabularInline):
    model = ShareLink
    extra = 0
    fields = ("created_by", "created_at", "expires_at", "revoked_at")
    readonly_fields = ("created_by", "created_at", "revoked_at")
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False  # a token is shown once, on the dashboard's Share page


@admin.register(Dashboard)
class DashboardAdmin(admin.ModelAdmin):
    list_display = ("title", "owner", "updated_at")
    list_select_related = ("owner",)
    search_fields = ("title", "description", "owner__username")
    filter_horizontal = ("shared_with",)
    inlines = [ChartInline, ShareLinkInline]


@admin.register(ShareLink)
class ShareLinkAdmin(admin.ModelAdmin):
    list_display = ("__str__", "dashboard", "created_by", "created_at", "expires_at", "revoked_at")
    list_select_related = ("dashboard", "created_by")
    list_filter = ("revoked_at",)
    readonly_fields = ("dashboard", "created_by", "created_at", "revoked_at")
    actions = ["revoke"]

    def has_add_permission(self, request):
        return False

    @admin.action(description="Revoke the selected links")
    def revoke(self, request, queryset):
        for link in queryset:
            services.revoke_share_link(link)
        self.message_user(request, f"{queryset.count()} link(s) revoked.")
