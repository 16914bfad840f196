"""What the API accepts and answers. Input serializers only validate; output serializers only describe.

Output serializers expect a `request` in their context: every link they write is absolute.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.validators import UniqueValidator

from diagnosis import selectors
from diagnosis.api import errors
from diagnosis.api.errors import UNKNOWN_PATIENT
from diagnosis.models import Consent, Patient, Prediction, Reading, Study, StudyImage
from ml.predictor import NO_TUMOR, TUMOR

LABELS = [(TUMOR, "Tumor"), (NO_TUMOR, "No tumor")]
NO_FILE = "Send at least one image: `image` for one file, or `images` (repeated) for several."


def absolute_url(request, name: str, *args) -> str:
    return request.build_absolute_uri(reverse(f"api:{name}", args=args))


# --- Authentication ----------------------------------------------------------------------------------


class CredentialsSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150, help_text="The account's username, as on the login page.")
    password = serializers.CharField(max_length=4096, trim_whitespace=False, write_only=True,
                                     style={"input_type": "password"}, help_text="The account's password.")


class TokenSerializer(serializers.Serializer):
    token = serializers.CharField(help_text="Send it as `Authorization: Token <token>`. Shown only once.")
    expires_at = serializers.DateTimeField(help_text="After this the token is refused; request a new one.")


# --- Errors (for the schema; diagnosis.api.errors writes them) ------------------------------------------


class RejectedFileSerializer(serializers.Serializer):
    filename = serializers.CharField(help_text="The uploaded file's name, as sent.")
    code = serializers.ChoiceField(choices=["too_large", "unsupported_type", "unreadable", "burned_in_annotation",
                                            "mixed_series", "too_many_files"],
                                   help_text="burned_in_annotation: a DICOM file declares identifying text in its "
                                             "pixels; mixed_series and too_many_files concern the upload as a whole "
                                             "(its filename is 'the upload').")
    reason = serializers.CharField(help_text="Why the file could not be used, for a person.")


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.ChoiceField(choices=list(errors.CODES.items()), help_text="Stable and machine-readable.")
    message = serializers.CharField(help_text="What went wrong, for a person.")
    fields = serializers.DictField(child=serializers.ListField(child=serializers.CharField()), required=False,
                                   help_text="Field name -> messages, when particular fields were wrong.")
    rejected = RejectedFileSerializer(many=True, required=False, help_text="Uploaded files that could not be used.")


class ErrorSerializer(serializers.Serializer):
    error = ErrorDetailSerializer()


# --- Patients and consent ------------------------------------------------------------------------------


class KeyRelatedField(serializers.SlugRelatedField):
    """An object by a text key. Text no key can hold (with a NUL, which PostgreSQL refuses) is simply unknown."""

    def to_internal_value(self, data):
        if isinstance(data, str) and "\x00" in data:
            self.fail("does_not_exist", slug_name=self.slug_field, value=data.replace("\x00", ""))
        return super().to_internal_value(data)


class ConsentSerializer(serializers.ModelSerializer):
    active = serializers.BooleanField(source="is_active", read_only=True, help_text="Granted and not withdrawn.")

    class Meta:
        model = Consent
        fields = ["id", "scope", "granted_at", "withdrawn_at", "active"]
        read_only_fields = fields
        extra_kwargs = {"id": {"help_text": "The consent record's id."},
                        "granted_at": {"help_text": "When the patient gave consent."},
                        "withdrawn_at": {"help_text": "When the patient withdrew it; null while it stands."}}


class PatientSerializer(serializers.ModelSerializer):
    url = serializers.SerializerMethodField(help_text="This patient in the API.")
    ai_consent = serializers.BooleanField(source="has_consent", read_only=True,
                                          help_text="An active consent for AI analysis: studies can be submitted.")
    care_team = serializers.SlugRelatedField(many=True, read_only=True, slug_field="username",
                                             help_text="Usernames of the clinicians who may see this patient.")
    consents = ConsentSerializer(many=True, read_only=True, help_text="Every consent record, newest first.")

    class Meta:
        model = Patient
        fields = ["code", "url", "ai_consent", "care_team", "consents", "created_at"]
        read_only_fields = fields
        extra_kwargs = {"created_at": {"help_text": "When the patient was added to BrainScan."}}

    def get_url(self, patient) -> str:
        return absolute_url(self.context["request"], "patient-detail", patient.code)


class PatientCreateSerializer(serializers.Serializer):
    code = serializers.RegexField(
        r"^[A-Za-z0-9][A-Za-z0-9_-]{2,31}$", required=False,
        validators=[UniqueValidator(Patient.objects.all(), message="A patient with this code already exists.")],
        error_messages={"invalid": "Use 3 to 32 letters, digits, - or _, starting with a letter or digit."},
        help_text="The hospital's pseudonymous code (never a name, birth date or record number); "
                  "left out, one is generated, e.g. P-7KQ2M9XD.")
    care_team = KeyRelatedField(
        many=True, required=False, slug_field="username", queryset=get_user_model().objects.filter(is_active=True),
        help_text="Usernames of the clinicians who may see the patient and submit studies.")


class ConsentCreateSerializer(serializers.Serializer):
    scope = serializers.ChoiceField(choices=Consent.Scope.choices, default=Consent.Scope.AI_ANALYSIS)


class ConsentWithdrawnSerializer(serializers.Serializer):
    withdrawn = serializers.IntegerField(help_text="Active consents withdrawn (0 when there was none).")
    studies_cancelled = serializers.IntegerField(help_text="Queued studies cancelled because of the withdrawal.")


# --- Studies: input ----------------------------------------------------------------------------------


@extend_schema_field(OpenApiTypes.STR)
class VisiblePatientField(KeyRelatedField):
    """A patient by code, among those the caller may use; any other code reads as unknown, existing or not."""

    default_error_messages = {"does_not_exist": UNKNOWN_PATIENT, "invalid": UNKNOWN_PATIENT}

    def __init__(self, **kwargs):
        super().__init__(slug_field="code", **kwargs)

    def get_queryset(self):
        return selectors.patients_for(self.context["request"].user)


class StudySubmitSerializer(serializers.Serializer):
    patient = VisiblePatientField(help_text="The patient's pseudonymous code.")
    image = serializers.FileField(required=False, allow_empty_file=True, use_url=False,
                                  help_text="One JPEG, PNG or DICOM file (each frame of a DICOM file is a slice).")
    images = serializers.ListField(child=serializers.FileField(allow_empty_file=True, use_url=False), required=False,
                                   help_text="Several JPEG, PNG or DICOM files: repeat the field once per file.")

    def validate(self, data):
        files = ([data["image"]] if data.get("image") else []) + list(data.get("images", []))
        if not files:
            raise serializers.ValidationError({"images": [NO_FILE]})
        return {"patient": data["patient"], "files": files}


class StudyFilterSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=Study.Status.choices, required=False)
    patient = serializers.CharField(required=False, max_length=32, help_text="A patient's code, or part of it (any "
                                                                             "case), as the web worklist's search.")
    created_after = serializers.DateTimeField(required=False, help_text="ISO 8601 date or date-time, inclusive.")
    created_before = serializers.DateTimeField(required=False, help_text="ISO 8601 date or date-time, exclusive "
                                                                         "(a date means its midnight).")
    mine = serializers.BooleanField(required=False, default=False,
                                    help_text="Only the studies the caller submitted.")
    order = serializers.ChoiceField(choices=[(selectors.NEWEST, "Newest first"),
                                             (selectors.TRIAGE, "Most suspicious first")],
                                    default=selectors.NEWEST, required=False)


class ReadingInputSerializer(serializers.Serializer):
    agrees_with_model = serializers.BooleanField(help_text="Whether the clinician agrees with the model's label.")
    finding = serializers.ChoiceField(choices=Reading.Finding.choices, help_text="The clinician's own finding.")
    comment = serializers.CharField(required=False, allow_blank=True, max_length=2000, default="",
                                    help_text="Optional free text (no patient-identifying data).")


# --- Studies: output -----------------------------------------------------------------------------------


class StudyAcceptedSerializer(serializers.Serializer):
    """Built from a services.Submission."""

    id = serializers.UUIDField(source="study.pk", help_text="The study's id.")
    status = serializers.ChoiceField(source="study.status", choices=Study.Status.choices,
                                     help_text="queued right after a submission or a retry.")
    url = serializers.SerializerMethodField(help_text="Poll this for the status and, once completed, the result.")
    patient = serializers.CharField(source="study.patient.code", help_text="The patient's code.")
    rejected = RejectedFileSerializer(source="rejections", many=True,
                                      help_text="Files that were not added, and why; the others were.")

    def get_url(self, submission) -> str:
        return absolute_url(self.context["request"], "study-detail", submission.study.pk)


class StudyErrorSerializer(serializers.Serializer):
    code = serializers.CharField(source="error_code", help_text="Machine-readable, e.g. unreadable_image, "
                                                                "attempts_exhausted, service_unavailable, "
                                                                "consent_withdrawn, unassessable.")
    message = serializers.CharField(source="error", help_text="Why the study did not complete, for a clinician.")


STUDY_FIELD_HELP = {
    "id": {"help_text": "The study's id."},
    "created_at": {"help_text": "When the study was submitted."},
    "updated_at": {"help_text": "When the study last changed."},
    "started_at": {"help_text": "When a worker last started the assessment."},
    "finished_at": {"help_text": "When the study completed, failed or was cancelled."},
    "probability": {"help_text": "Highest tumor probability among the images; null until completed."},
}


class StudySummarySerializer(serializers.ModelSerializer):
    url = serializers.SerializerMethodField(help_text="The study in the API, with its result.")
    patient = serializers.CharField(source="patient.code", help_text="The patient's code.")
    submitted_by = serializers.CharField(source="submitted_by.username", help_text="Who submitted it (username).")
    label = serializers.SerializerMethodField(help_text="tumor or no_tumor; null until completed.")
    images = serializers.IntegerField(source="image_count", help_text="Number of images (slices) in the study.")

    class Meta:
        model = Study
        fields = ["id", "url", "status", "patient", "submitted_by", "created_at", "finished_at", "label",
                  "probability", "images", "series", "suspicious_slices"]
        read_only_fields = fields
        extra_kwargs = {**STUDY_FIELD_HELP,
                        "series": {"help_text": "One series (a volume) rather than separate slices."},
                        "suspicious_slices": {"help_text": "Slices at or above the threshold; null until completed."}}

    def get_url(self, study) -> str:
        return absolute_url(self.context["request"], "study-detail", study.pk)

    @extend_schema_field(serializers.ChoiceField(choices=LABELS, allow_null=True))
    def get_label(self, study):
        return study.label or None


class FeatureSerializer(serializers.Serializer):
    """One row of selectors.feature_rows."""

    name = serializers.CharField(help_text="The feature, e.g. glcm_contrast.")
    description = serializers.CharField(help_text="What it measures, in plain words.")
    value = serializers.FloatField(help_text="Its value for this image (after cropping to the head and resizing).")
    typical_no_tumor = serializers.ListField(child=serializers.FloatField(), allow_null=True,
                                             help_text="25th to 75th percentile in the training images without tumor.")
    typical_tumor = serializers.ListField(child=serializers.FloatField(), allow_null=True,
                                          help_text="25th to 75th percentile in the training images with tumor.")
    contribution = serializers.FloatField(allow_null=True,
                                          help_text="Contribution to the texture model's log-odds of tumor.")


class QualitySerializer(serializers.Serializer):
    """The quality gate's verdict on an image (Prediction.quality_summary)."""

    status = serializers.ChoiceField(choices=Prediction.Quality.choices,
                                     help_text="ok: assessed; rejected: cannot be assessed (no label, probability "
                                               "or heatmap is given).")
    code = serializers.CharField(help_text="Why it was rejected: not_mr, colour, too_small, empty, noise, "
                                           "too_little_head, not_brain_mri; empty when ok.")
    message = serializers.CharField(help_text="The reason in plain words, for a clinician; empty when ok.")


def shown(prediction: Prediction | None, value):
    """What a clinician may see of a result: nothing until there is one, nor for an image the gate refused."""
    return value if prediction is not None and prediction.usable else None


def heatmap_url(request, prediction: Prediction | None) -> str | None:
    return shown(prediction, prediction and absolute_url(request, "study-heatmap", prediction.image.study_id,
                                                          prediction.image_id))


class ImagePredictionSerializer(serializers.ModelSerializer):
    """An image the quality gate rejected has no label, probability, heatmap or features here."""

    label = serializers.SerializerMethodField(help_text="tumor when the probability is at or above the threshold; "
                                                        "null when the image cannot be assessed.")
    probability = serializers.SerializerMethodField(help_text="The CNN's tumor probability, 0 to 1; null when the "
                                                              "image cannot be assessed.")
    heatmap_url = serializers.SerializerMethodField(help_text="PNG of the network's evidence over the image; null "
                                                              "when the image cannot be assessed.")
    features = serializers.SerializerMethodField(help_text="The 13 texture features of the slice.")
    feature_probability = serializers.FloatField(allow_null=True,
                                                 help_text="The texture model's own probability of tumor.")
    quality = QualitySerializer(source="quality_summary", help_text="The quality gate's verdict.")

    class Meta:
        model = Prediction
        fields = ["quality", "label", "probability", "threshold", "model_version", "model_sha256", "heatmap_url",
                  "feature_probability", "features", "inference_ms", "latency_ms", "created_at"]
        read_only_fields = fields
        extra_kwargs = {"threshold": {"help_text": "The model's decision threshold."},
                        "model_version": {"help_text": "The model version that ran (see /api/v1/models/)."},
                        "model_sha256": {"help_text": "SHA-256 of the exact weights that ran."},
                        "created_at": {"help_text": "When the prediction was stored."}}

    @extend_schema_field(serializers.ChoiceField(choices=LABELS, allow_null=True))
    def get_label(self, prediction):
        return shown(prediction, prediction.label)

    @extend_schema_field(serializers.FloatField(allow_null=True))
    def get_probability(self, prediction):
        return shown(prediction, prediction.probability)

    @extend_schema_field(serializers.URLField(allow_null=True))
    def get_heatmap_url(self, prediction):
        return heatmap_url(self.context["request"], prediction)

    @extend_schema_field(FeatureSerializer(many=True))
    def get_features(self, prediction):
        return FeatureSerializer(selectors.feature_rows(prediction), many=True).data if prediction.usable else []


class ImageSerializer(serializers.ModelSerializer):
    image_url = serializers.SerializerMethodField(help_text="The stored PNG (what the model saw).")
    acquisition = serializers.DictField(help_text="Non-identifying acquisition details (DICOM only).")
    quality = serializers.SerializerMethodField(help_text="The quality gate's verdict; null until assessed.")
    prediction = serializers.SerializerMethodField()

    class Meta:
        model = StudyImage
        fields = ["id", "position", "source_format", "width", "height", "sha256", "acquisition", "image_url",
                  "quality", "prediction"]
        read_only_fields = fields
        extra_kwargs = {"id": {"help_text": "The image's id."},
                        "position": {"help_text": "Order in the study, from 0."},
                        "width": {"help_text": "Width of the stored image, in pixels."},
                        "height": {"help_text": "Height of the stored image, in pixels."}}

    def get_image_url(self, image) -> str:
        return absolute_url(self.context["request"], "study-image", image.study_id, image.pk)

    @extend_schema_field(QualitySerializer(allow_null=True))
    def get_quality(self, image):
        prediction = selectors.latest_prediction(image)
        return QualitySerializer(prediction.quality_summary).data if prediction else None

    @extend_schema_field(ImagePredictionSerializer(allow_null=True))
    def get_prediction(self, image):
        prediction = selectors.latest_prediction(image)
        return ImagePredictionSerializer(prediction, context=self.context).data if prediction else None


class SliceSerializer(serializers.ModelSerializer):
    """One slice of a study and its latest result, light enough to list a whole series page by page."""

    image_url = serializers.SerializerMethodField(help_text="The stored PNG (what the model saw).")
    probability = serializers.SerializerMethodField(help_text="The CNN's tumor probability; null until assessed "
                                                              "or when the slice cannot be assessed.")
    label = serializers.SerializerMethodField(help_text="tumor or no_tumor; null until assessed or when the slice "
                                                        "cannot be assessed.")
    quality = serializers.SerializerMethodField(help_text="The quality gate's verdict; null until assessed.")
    heatmap_url = serializers.SerializerMethodField(help_text="PNG of the evidence over the slice; null until "
                                                              "assessed or when the slice cannot be assessed.")

    class Meta:
        model = StudyImage
        fields = ["id", "position", "image_url", "probability", "label", "quality", "heatmap_url"]
        read_only_fields = fields
        extra_kwargs = {"id": {"help_text": "The slice's image id."},
                        "position": {"help_text": "Index along the series (anatomical order), from 0."}}

    def get_image_url(self, image) -> str:
        return absolute_url(self.context["request"], "study-image", image.study_id, image.pk)

    @extend_schema_field(serializers.FloatField(allow_null=True))
    def get_probability(self, image):
        prediction = selectors.latest_prediction(image)
        return shown(prediction, prediction and prediction.probability)

    @extend_schema_field(serializers.ChoiceField(choices=LABELS, allow_null=True))
    def get_label(self, image):
        prediction = selectors.latest_prediction(image)
        return shown(prediction, prediction and prediction.label)

    @extend_schema_field(QualitySerializer(allow_null=True))
    def get_quality(self, image):
        prediction = selectors.latest_prediction(image)
        return QualitySerializer(prediction.quality_summary).data if prediction else None

    @extend_schema_field(serializers.URLField(allow_null=True))
    def get_heatmap_url(self, image):
        return heatmap_url(self.context["request"], selectors.latest_prediction(image))


class ProgressSerializer(serializers.Serializer):
    done = serializers.IntegerField(help_text="Slices with a result.")
    total = serializers.IntegerField(help_text="Slices in the study.")


class RegionSerializer(serializers.Serializer):
    """A series' most suspicious run of slices (ml.volumes.suspicious_region)."""

    first = serializers.IntegerField(help_text="Position of the run's first slice.")
    last = serializers.IntegerField(help_text="Position of the run's last slice.")
    peak = serializers.IntegerField(help_text="Position of the run's most suspicious slice.")
    score = serializers.FloatField(help_text="The run's mean probability: the study's probability.")
    window = serializers.IntegerField(help_text="Slices averaged (chosen on validation volumes; see the model card).")
    runs = serializers.ListField(child=serializers.ListField(child=serializers.IntegerField()),
                                 help_text="Runs of neighbouring suspicious slices, as [first, last] positions.")


class StudyPredictionSerializer(serializers.Serializer):
    """The study's result: that of its most suspicious image among those that could be assessed."""

    label = serializers.ChoiceField(choices=LABELS, help_text="tumor if the probability is at or above the "
                                                              "threshold.")
    probability = serializers.FloatField(help_text="Separate images: the highest tumor probability among the assessed "
                                                   "ones. A series: its most suspicious region's score.")
    threshold = serializers.FloatField(help_text="The model's decision threshold.")
    model_version = serializers.CharField(help_text="The model version that ran.")
    model_sha256 = serializers.CharField(help_text="SHA-256 of the exact weights that ran.")
    image = serializers.UUIDField(help_text="The image with the highest probability (a series: its region's peak).")
    heatmap_url = serializers.URLField(help_text="That image's heatmap (PNG).")
    unassessable_images = serializers.ListField(child=serializers.IntegerField(),
                                                help_text="Positions of the images that could not be assessed (not "
                                                          "part of the result).")
    suspicious_slices = serializers.IntegerField(help_text="Slices at or above the threshold.")
    region = RegionSerializer(allow_null=True, help_text="A series' most suspicious region; null for separate "
                                                         "images.")


class ReadingSerializer(serializers.ModelSerializer):
    clinician = serializers.CharField(source="clinician.username", help_text="Who recorded it (username).")

    class Meta:
        model = Reading
        fields = ["clinician", "agrees_with_model", "finding", "comment", "created_at", "updated_at"]
        read_only_fields = fields
        extra_kwargs = {"agrees_with_model": {"help_text": "Whether the clinician agrees with the model's label."},
                        "comment": {"help_text": "The clinician's comment, if any."},
                        "created_at": {"help_text": "When the reading was first recorded."},
                        "updated_at": {"help_text": "When the reading was last changed."}}


class StudyDetailSerializer(serializers.ModelSerializer):
    """Expects a study from selectors.study_with_results (images, predictions and readings prefetched)."""

    url = serializers.SerializerMethodField(help_text="This study in the API.")
    patient = serializers.CharField(source="patient.code", help_text="The patient's code.")
    submitted_by = serializers.CharField(source="submitted_by.username", help_text="Who submitted it (username).")
    error = serializers.SerializerMethodField(help_text="Why it failed, was cancelled or cannot be assessed; null "
                                                        "otherwise.")
    prediction = serializers.SerializerMethodField(help_text="The study's result once completed; null before.")
    slices = serializers.IntegerField(source="images.count", help_text="Number of slices (images) in the study.")
    progress = serializers.SerializerMethodField(help_text="Slices assessed so far: the live progress of a series.")
    slices_url = serializers.SerializerMethodField(help_text="Every slice's result in slice order, page by page.")
    images = serializers.SerializerMethodField(help_text="The study's images with their full results, in study "
                                                         "order; empty for a series (page through slices_url).")
    readings = ReadingSerializer(many=True, help_text="Clinicians' own readings of the study.")

    class Meta:
        model = Study
        fields = ["id", "url", "status", "patient", "submitted_by", "created_at", "updated_at", "started_at",
                  "finished_at", "attempts", "error", "series", "slices", "progress", "slices_url", "prediction",
                  "images", "readings"]
        read_only_fields = fields
        extra_kwargs = {**STUDY_FIELD_HELP, "series": {"help_text": "One series (a volume) in anatomical order, "
                                                                    "rather than separate slices."}}

    @extend_schema_field(ProgressSerializer)
    def get_progress(self, study):
        return selectors.progress(study)

    def get_slices_url(self, study) -> str:
        return absolute_url(self.context["request"], "study-slices", study.pk)

    @extend_schema_field(ImageSerializer(many=True))
    def get_images(self, study):
        return [] if study.series else ImageSerializer(study.images.all(), many=True, context=self.context).data

    def get_url(self, study) -> str:
        return absolute_url(self.context["request"], "study-detail", study.pk)

    @extend_schema_field(StudyErrorSerializer(allow_null=True))
    def get_error(self, study):
        return StudyErrorSerializer(study).data if study.error else None

    @extend_schema_field(StudyPredictionSerializer(allow_null=True))
    def get_prediction(self, study):
        if study.status != Study.Status.COMPLETED:
            return None
        predictions = [p for p in map(selectors.latest_prediction, study.images.all()) if p is not None]
        assessed = [p for p in predictions if p.usable]
        if not assessed:
            return None
        peak = (study.region or {}).get("peak")
        top = next((p for p in assessed if p.image.position == peak), None) or max(assessed,
                                                                                    key=lambda p: p.probability)
        return StudyPredictionSerializer({
            "label": study.label, "probability": study.probability, "threshold": top.threshold,
            "model_version": top.model_version, "model_sha256": top.model_sha256, "image": top.image_id,
            "heatmap_url": heatmap_url(self.context["request"], top),
            "unassessable_images": [p.image.position for p in predictions if not p.usable],
            "suspicious_slices": study.suspicious_slices or 0,
            "region": study.region or None,
        }).data


# --- Models --------------------------------------------------------------------------------------------


class ModelVersionSerializer(serializers.Serializer):
    """Built from selectors.registered_models()."""

    version = serializers.CharField(help_text="The version's name (its folder in the registry).")
    active = serializers.BooleanField(help_text="The registry's active version (models/ACTIVE).")
    serving = serializers.BooleanField(help_text="The version this installation runs (BRAINSCAN_MODEL_VERSION, "
                                                 "else the active one).")
    card = serializers.SerializerMethodField(help_text="The model card: data, split, metrics with confidence "
                                                       "intervals, threshold, limitations. Without the per-file "
                                                       "test lists.")

    @extend_schema_field(OpenApiTypes.OBJECT)
    def get_card(self, model) -> dict:
        card = {key: value for key, value in model["card"].items() if key != "test_predictions"}
        if isinstance(card.get("split"), dict):
            card["split"] = {key: value for key, value in card["split"].items() if key != "test_files"}
        return card
