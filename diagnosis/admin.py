"""Administration: accounts, patients and consent are managed here; clinical records are read-only."""

from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from diagnosis import audit, services
from diagnosis.api import tokens
from diagnosis.models import (ApiToken, AuditEvent, Consent, Patient, Prediction, Reading, Study, StudyImage,
                              WorkerHeartbeat)

Action = AuditEvent.Action
User = get_user_model()


class ReadOnlyAdmin(admin.ModelAdmin):
    """Visible to administrators, never changed or deleted through the admin."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class ConsentInline(admin.TabularInline):
    model = Consent
    extra = 0
    fields = ["scope", "granted_at", "withdrawn_at", "recorded_by"]
    readonly_fields = fields
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Patient)
class PatientAdmin(admin.ModelAdmin):
    list_display = ["code", "care_team_list", "ai_consent", "study_count", "created_at"]
    search_fields = ["code"]
    filter_horizontal = ["care_team"]
    inlines = [ConsentInline]
    actions = ["grant_ai_consent", "withdraw_ai_consent", "erase_patients"]

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("care_team", "consents", "studies")

    def has_delete_permission(self, request, obj=None):
        return False  # deletion is the audited "Erase" action, which also removes the files

    @admin.display(description="Care team")
    def care_team_list(self, patient):
        return ", ".join(user.get_username() for user in patient.care_team.all()) or "-"

    @admin.display(description="AI consent", boolean=True)
    def ai_consent(self, patient):
        return any(c.is_active and c.scope == Consent.Scope.AI_ANALYSIS for c in patient.consents.all())

    @admin.display(description="Studies")
    def study_count(self, patient):
        return len(patient.studies.all())

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        audit.record(Action.PATIENT_CHANGED if change else Action.PATIENT_CREATED, request=request, obj=obj,
                     patient_code=obj.code, via="admin", details={"fields": sorted(form.changed_data)})

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        if "care_team" in form.changed_data:
            audit.record(Action.PATIENT_CHANGED, request=request, obj=form.instance, patient_code=form.instance.code,
                         via="admin", details={"care_team": [u.get_username() for u in form.instance.care_team.all()]})

    @admin.action(description="Record consent for AI analysis")
    def grant_ai_consent(self, request, queryset):
        for patient in queryset:
            services.grant_consent(patient=patient, actor=request.user, request=request)
        self.message_user(request, f"Consent recorded for {queryset.count()} patient(s).")

    @admin.action(description="Withdraw consent for AI analysis (cancels studies not yet started)")
    def withdraw_ai_consent(self, request, queryset):
        cancelled = 0
        for consent in Consent.objects.active(Consent.Scope.AI_ANALYSIS).filter(patient__in=queryset):
            cancelled += services.withdraw_consent(consent=consent, actor=request.user, request=request)
        self.message_user(request, f"Consent withdrawn; {cancelled} waiting study(ies) cancelled.")

    @admin.action(description="Erase patient: delete all studies, images, heatmaps and predictions")
    def erase_patients(self, request, queryset):
        for patient in list(queryset):
            counts = services.erase_patient(patient=patient, actor=request.user, request=request)
            self.message_user(request, f"Erased {patient.code}: {counts['studies']} studies, {counts['images']} "
                              f"images, {counts['files']} files.", messages.WARNING)


@admin.register(Consent)
class ConsentAdmin(admin.ModelAdmin):
    list_display = ["patient", "scope", "granted_at", "withdrawn_at", "recorded_by"]
    list_filter = ["scope", ("withdrawn_at", admin.EmptyFieldListFilter)]
    search_fields = ["patient__code"]
    fields = ["patient", "scope", "granted_at", "withdrawn_at", "recorded_by"]
    readonly_fields = ["recorded_by", "withdrawn_at"]
    actions = ["withdraw"]

    def get_readonly_fields(self, request, obj=None):
        # A recorded consent is a fact: it is withdrawn, never rewritten.
        return self.fields if obj else self.readonly_fields

    def has_delete_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        if change:
            return
        already = obj.patient.has_active_consent(obj.scope)
        standing = services.grant_consent(patient=obj.patient, scope=obj.scope, actor=request.user, request=request,
                                          granted_at=obj.granted_at)
        if already:
            self.message_user(request, "This patient's consent was already recorded; it stands unchanged.",
                              messages.WARNING)
        obj.pk, obj.granted_at, obj.recorded_by = standing.pk, standing.granted_at, standing.recorded_by

    @admin.action(description="Withdraw the selected consents")
    def withdraw(self, request, queryset):
        cancelled = sum(services.withdraw_consent(consent=c, actor=request.user, request=request)
                        for c in queryset.filter(withdrawn_at__isnull=True))
        self.message_user(request, f"Withdrawn; {cancelled} waiting study(ies) cancelled.")


class ReadOnlyInline(admin.TabularInline):
    """Rows shown under their parent, never added, changed or deleted there (set `fields`)."""

    extra = 0
    can_delete = False

    def get_readonly_fields(self, request, obj=None):
        return self.fields

    def has_add_permission(self, request, obj=None):
        return False


class StudyImageInline(ReadOnlyInline):
    model = StudyImage
    fields = ["position", "source_format", "width", "height", "sha256"]


@admin.register(Study)
class StudyAdmin(ReadOnlyAdmin):
    list_display = ["short_id", "patient", "submitted_by", "status", "label", "probability", "attempts", "created_at"]
    list_filter = ["status", "label"]
    search_fields = ["patient__code", "id"]
    date_hierarchy = "created_at"
    inlines = [StudyImageInline]
    readonly_fields = [f.name for f in Study._meta.fields]


@admin.register(Prediction)
class PredictionAdmin(ReadOnlyAdmin):
    list_display = ["image", "quality", "quality_code", "label", "probability", "threshold", "model_version",
                    "latency_ms", "created_at"]
    list_filter = ["quality", "quality_code", "label", "model_version"]
    # Files have no public URL: link to the permission-checked, audited views instead.
    readonly_fields = [f.name for f in Prediction._meta.fields if f.name != "heatmap"] + ["image_link", "heatmap_link"]
    fields = readonly_fields

    @admin.display(description="Image")
    def image_link(self, prediction):
        url = reverse("study-image", args=[prediction.image.study_id, prediction.image_id])
        return format_html('<a href="{}">open the image</a>', url)

    @admin.display(description="Heatmap")
    def heatmap_link(self, prediction):
        if not prediction.heatmap:
            return "none (the image could not be assessed)"
        url = reverse("study-heatmap", args=[prediction.image.study_id, prediction.image_id])
        return format_html('<a href="{}">view</a>', url)


@admin.register(Reading)
class ReadingAdmin(ReadOnlyAdmin):
    list_display = ["study", "clinician", "agrees_with_model", "finding", "updated_at"]
    list_filter = ["agrees_with_model", "finding"]


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "actor_username", "action", "object_type", "object_id", "patient_code",
                    "ip_address", "via"]
    list_filter = ["action", "via"]
    search_fields = ["actor_username", "patient_code", "object_id"]
    date_hierarchy = "created_at"
    readonly_fields = [f.name for f in AuditEvent._meta.fields]

    def get_actions(self, request):
        return {}  # not even the bulk delete action


@admin.register(WorkerHeartbeat)
class WorkerHeartbeatAdmin(ReadOnlyAdmin):
    list_display = ["hostname", "last_seen", "model_version"]


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Seen and deleted, never added or changed (only the token's hash is stored): deleting a token revokes it."""

    list_display = ["user", "created_at", "expires_at", "revoked_at", "live"]
    list_filter = [("revoked_at", admin.EmptyFieldListFilter)]
    list_select_related = ["user"]
    search_fields = ["user__username"]
    date_hierarchy = "created_at"
    fields = ["user", "created_at", "expires_at", "revoked_at"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="Live", boolean=True)
    def live(self, token):
        return token.revoked_at is None and token.expires_at > timezone.now()

    def delete_model(self, request, obj):
        tokens.delete(tokens=[obj], request=request)

    def delete_queryset(self, request, queryset):
        tokens.delete(tokens=queryset.select_related("user"), request=request)


class AuditedUserAdmin(UserAdmin):
    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        changed = sorted(field for field in form.changed_data if field not in ("password", "password1", "password2"))
        if "password" in form.changed_data or "password1" in form.changed_data:
            changed.append("password")
        audit.record(Action.USER_CHANGED, request=request, obj=obj, via="admin",
                     details={"username": obj.get_username(), "created": not change, "fields": changed})


admin.site.unregister(User)
admin.site.register(User, AuditedUserAdmin)
