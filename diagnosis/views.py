"""Web pages for clinicians. Thin: they read through selectors and write through services."""

from __future__ import annotations

import csv
import uuid
from itertools import chain

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, HttpResponseBadRequest, JsonResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from diagnosis import audit, selectors, services
from diagnosis.files import serve_audited
from diagnosis.forms import ReadingForm, StudyForm
from diagnosis.models import AuditEvent, Study
from integrations.sr import NoStructuredReport, dicom_sr_response

Action = AuditEvent.Action


def _wants_json(request) -> bool:
    return "application/json" in request.headers.get("Accept", "")


def _worklist_filters(request) -> dict:
    """The worklist's filters from the query string; the page and its CSV export read them alike.

    A clinician starts from their own submissions, an administrator (who oversees every study) from all.
    """
    default_scope = "team" if selectors.is_admin(request.user) else "mine"
    return {"mine_only": request.GET.get("scope", default_scope) == "mine",
            "patient_query": request.GET.get("q", "").strip(), "status": request.GET.get("status", ""),
            "order": request.GET.get("order", selectors.NEWEST)}


@login_required
@require_GET
def worklist(request):
    filters = _worklist_filters(request)
    page = Paginator(selectors.worklist(request.user, **filters), 25).get_page(request.GET.get("page"))
    audit.record(Action.STUDY_LISTED, request=request, details={"page": page.number, "shown": len(page)})
    return render(request, "diagnosis/worklist.html", {
        "page": page, "order": filters["order"], "scope": "mine" if filters["mine_only"] else "team",
        "q": filters["patient_query"], "status": filters["status"], "statuses": Study.Status.choices,
    })


@login_required
@require_http_methods(["GET", "POST"])
def study_new(request):
    form = StudyForm(request.POST or None, request.FILES or None, user=request.user)
    rejections = []
    if request.method == "POST" and form.is_valid():
        try:
            submission = services.submit_study(user=request.user, patient=form.cleaned_data["patient"],
                                               uploads=form.cleaned_data["images"], request=request)
        except services.NothingUsable as error:
            rejections = error.rejections
            form.add_error("images", str(error))
        except services.ServiceError as error:
            form.add_error("patient" if isinstance(error, (services.ConsentRequired, services.NotAllowed))
                           else "images", str(error))
        else:
            for rejection in submission.rejections:
                messages.warning(request, f"{rejection.filename} was not added: {rejection.reason}")
            url = reverse("study-detail", args=[submission.study.pk])
            if _wants_json(request):
                return JsonResponse({"url": url, "rejected": [r.__dict__ for r in submission.rejections]}, status=201)
            return redirect(url)
    if _wants_json(request) and request.method == "POST":
        return JsonResponse({"errors": {k: [str(m) for m in v] for k, v in form.errors.items()},
                             "rejected": [r.__dict__ for r in rejections]}, status=400)
    return render(request, "diagnosis/study_new.html", {
        "form": form, "rejections": rejections, "max_files": settings.MAX_FILES_PER_STUDY,
        "max_mb": settings.MAX_UPLOAD_BYTES // 1_048_576, "max_slices": settings.MAX_SLICES,
        "max_series_mb": settings.MAX_SERIES_BYTES // 1_048_576,
    }, status=400 if form.errors else 200)


def _visible_study(request, study_id) -> Study:
    return get_object_or_404(selectors.studies_for(request.user), pk=study_id)


def _study_context(request, study: Study) -> dict:
    study = selectors.study_with_results(study)
    images = [(image, selectors.latest_prediction(image)) for image in study.images.all()]
    unassessable = [(image, prediction) for image, prediction in images if prediction and not prediction.usable]
    my_reading = next((r for r in study.readings.all() if r.clinician_id == request.user.pk), None)
    series = {"series_data": selectors.series_view(study, images), "progress": selectors.progress(study),
              "key_slices": selectors.key_slices(study, images)} if study.series else {}
    return {
        **series,
        "study": study, "images": images, "unassessable": unassessable, "readings": study.readings.all(),
        "reading_form": ReadingForm(instance=my_reading),
        "can_retry": services.can_retry(study),
    }


@login_required
@require_GET
def study_detail(request, study_id):
    study = _visible_study(request, study_id)
    audit.record(Action.STUDY_VIEWED, request=request, obj=study, patient_code=study.patient.code)
    return render(request, "diagnosis/study_detail.html", _study_context(request, study))


@login_required
@require_GET
def study_panel(request, study_id):
    """The result part of the study page, fetched by the page itself when the status changes."""
    study = _visible_study(request, study_id)
    return render(request, "diagnosis/_study_panel.html", _study_context(request, study))


@login_required
@require_GET
def study_status(request, study_id):
    study = _visible_study(request, study_id)
    return JsonResponse({"status": study.status, "label": study.label, "probability": study.probability,
                         "active": study.is_active, "progress": selectors.progress(study)})


@login_required
@require_POST
def study_retry(request, study_id):
    study = _visible_study(request, study_id)
    try:
        services.retry_study(user=request.user, study=study, request=request)
        messages.success(request, "The study was queued again.")
    except services.ServiceError as error:
        messages.error(request, str(error))
    return redirect("study-detail", study_id=study.pk)


@login_required
@require_POST
def study_reading(request, study_id):
    study = _visible_study(request, study_id)
    form = ReadingForm(request.POST)
    if form.is_valid():
        try:
            services.record_reading(user=request.user, study=study, request=request, **form.cleaned_data)
            messages.success(request, "Your reading was recorded.")
        except services.ServiceError as error:
            messages.error(request, str(error))
    else:
        messages.error(request, "The reading was not recorded: " + "; ".join(
            f"{form.fields[field].label}: {' '.join(errors)}" for field, errors in form.errors.items()))
    return redirect(reverse("study-detail", args=[study.pk]) + "#reading")


@login_required
@require_GET
def study_image(request, study_id, image_id):
    image = selectors.visible_image(request.user, study_id, image_id)
    download = request.GET.get("download") == "1"
    name = f"study-{image.study.short_id}-image-{image.position + 1}.png" if download else None
    return serve_audited(request, image.file.name, action=Action.IMAGE_VIEWED, obj=image,
                         patient_code=image.study.patient.code, download_name=name, details={"download": download})


@login_required
@require_GET
def study_image_dicom(request, study_id, image_id):
    """The de-identified DICOM file an image was made from, as a download."""
    image = selectors.visible_image(request.user, study_id, image_id)
    if not image.dicom:
        raise Http404("This image was not uploaded as DICOM")
    return serve_audited(request, image.dicom.name, action=Action.IMAGE_VIEWED, obj=image,
                         patient_code=image.study.patient.code, content_type="application/dicom",
                         download_name=f"study-{image.study.short_id}-image-{image.position + 1}.dcm",
                         details={"download": True, "format": "dicom"})


@login_required
@require_GET
def study_dicom_sr(request, study_id):
    """The study's AI result as a DICOM SR download, from the API's builder (integrations.sr)."""
    study = _visible_study(request, study_id)
    try:
        return dicom_sr_response(request, study, via="web")
    except NoStructuredReport as error:
        raise Http404(str(error)) from error


@login_required
@require_GET
def study_heatmap(request, study_id, image_id):
    image = selectors.visible_image(request.user, study_id, image_id)
    prediction = selectors.latest_prediction(image)
    if prediction is None or not prediction.heatmap:
        raise Http404("This image has no heatmap: it is not assessed yet, or could not be assessed")
    return serve_audited(request, prediction.heatmap.name, action=Action.HEATMAP_VIEWED, obj=prediction,
                         patient_code=image.study.patient.code)


class _Echo:
    """A file that hands back what is written to it, so csv.writer yields each line to a streaming response."""

    def write(self, line: str) -> str:
        return line


@login_required
@require_GET
def study_export(request):
    """CSV of the ticked studies, or of the whole filtered worklist when none is ticked."""
    try:
        ids = [uuid.UUID(value) for value in request.GET.getlist("id")]
    except ValueError:
        return HttpResponseBadRequest("A selected study id is not valid.", content_type="text/plain")
    filters = _worklist_filters(request)
    if ids:  # ticked studies are exported whatever the filters, among those the user may see
        studies = selectors.worklist(request.user, mine_only=False, order=filters["order"]).filter(pk__in=ids)
    else:
        studies = selectors.worklist(request.user, **filters)
    # Counted up front: the rows are only read while the response streams, after this view returns.
    audit.record(Action.STUDY_EXPORTED, request=request, details={"studies": studies.count()})
    writer = csv.writer(_Echo())
    lines = (writer.writerow(row) for row in chain([selectors.EXPORT_COLUMNS], selectors.export_rows(studies)))
    response = StreamingHttpResponse(lines, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="brainscan-studies.csv"'
    return response
