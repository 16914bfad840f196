"""Administration of webhooks: register endpoints (the secret is shown once, right after creation), follow
deliveries and their attempts, and send a delivery again. Pages that list endpoints or deliveries warn about
endpoints that are failing or were disabled for failing."""

from django import forms
from django.contrib import admin, messages
from django.template.response import TemplateResponse
from django.utils import timezone

from diagnosis.admin import ReadOnlyAdmin, ReadOnlyInline
from integrations import selectors, services
from integrations.models import EVENTS, WebhookAttempt, WebhookDelivery, WebhookEndpoint, all_events


def warn_about_endpoints(request) -> None:
    for endpoint in selectors.endpoints_needing_attention():
        if not endpoint.active:
            messages.error(request, f"Webhook endpoint {endpoint.url} was disabled on "
                                    f"{timezone.localtime(endpoint.disabled_at):%Y-%m-%d %H:%M}: "
                                    f"{endpoint.disabled_reason} Fix the receiver, then tick Active again: its "
                                    "waiting deliveries are sent at the next sweep.")
        else:
            messages.warning(request, f"Webhook endpoint {endpoint.url} has been failing since "
                                      f"{timezone.localtime(endpoint.failing_since):%Y-%m-%d %H:%M}; it is disabled "
                                      "after a day without a successful delivery.")


class WebhookEndpointForm(forms.ModelForm):
    url = forms.URLField(max_length=500, assume_scheme="https", label="URL",
                         help_text=WebhookEndpoint._meta.get_field("url").help_text)
    events = forms.MultipleChoiceField(choices=EVENTS, widget=forms.CheckboxSelectMultiple, initial=all_events,
                                       help_text="The events this endpoint receives.")

    class Meta:
        model = WebhookEndpoint
        fields = ["url", "events", "active"]


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    form = WebhookEndpointForm
    list_display = ["url", "event_list", "active", "failing_since", "disabled_at", "created_at"]
    list_filter = ["active"]
    search_fields = ["url"]
    readonly_fields = ["secret_masked", "created_at", "failing_since", "disabled_at", "disabled_reason"]

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["url", "events"]
        return ["url", "events", "active", "secret_masked", "created_at", "failing_since", "disabled_at",
                "disabled_reason"]

    @admin.display(description="Events")
    def event_list(self, endpoint):
        return ", ".join(endpoint.events)

    @admin.display(description="Secret")
    def secret_masked(self, endpoint):
        return f"{endpoint.masked_secret} (shown in full only when the endpoint was created)"

    def save_model(self, request, obj, form, change):
        services.save_endpoint(endpoint=obj, changed=form.changed_data, created=not change, actor=request.user,
                               request=request)

    def delete_model(self, request, obj):
        services.delete_endpoint(endpoint=obj, actor=request.user, request=request)

    def delete_queryset(self, request, queryset):
        for endpoint in queryset:
            services.delete_endpoint(endpoint=endpoint, actor=request.user, request=request)

    def response_add(self, request, obj, post_url_continue=None):
        """The one page that shows the secret: not in a message (a cookie), not on any later page."""
        context = {**self.admin_site.each_context(request), "endpoint": obj, "opts": self.opts,
                   "title": "Webhook endpoint registered"}
        response = TemplateResponse(request, "admin/integrations/webhookendpoint/secret.html", context)
        response["Cache-Control"] = "private, no-store"
        return response

    def changelist_view(self, request, extra_context=None):
        warn_about_endpoints(request)
        return super().changelist_view(request, extra_context)


class WebhookAttemptInline(ReadOnlyInline):
    model = WebhookAttempt
    fields = ["at", "status_code", "duration_ms", "error", "response_body"]


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdmin):
    list_display = ["webhook_id", "endpoint", "event", "study_id", "status", "attempts", "next_attempt_at",
                    "delivered_at", "created_at"]
    list_filter = ["status", "event", "endpoint"]
    search_fields = ["webhook_id", "study_id"]
    readonly_fields = ["endpoint", "event", "study_id", "webhook_id", "status", "attempts", "next_attempt_at",
                       "lease_expires_at", "last_error", "created_at", "delivered_at", "payload"]
    fields = readonly_fields
    inlines = [WebhookAttemptInline]
    actions = ["send_again"]

    def changelist_view(self, request, extra_context=None):
        warn_about_endpoints(request)
        return super().changelist_view(request, extra_context)

    @admin.action(description="Send again (a fresh series of attempts)")
    def send_again(self, request, queryset):
        queued = services.send_again(deliveries=queryset, actor=request.user, request=request)
        self.message_user(request, f"{queued} delivery(ies) queued to be sent again; those of an inactive endpoint "
                                   "wait until it is active again.")
