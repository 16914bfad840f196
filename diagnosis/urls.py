from django.urls import path

from diagnosis import views

urlpatterns = [
    path("", views.worklist, name="worklist"),
    path("studies/new/", views.study_new, name="study-new"),
    path("studies/export.csv", views.study_export, name="study-export"),
    path("studies/<uuid:study_id>/", views.study_detail, name="study-detail"),
    path("studies/<uuid:study_id>/panel/", views.study_panel, name="study-panel"),
    path("studies/<uuid:study_id>/status/", views.study_status, name="study-status"),
    path("studies/<uuid:study_id>/retry/", views.study_retry, name="study-retry"),
    path("studies/<uuid:study_id>/reading/", views.study_reading, name="study-reading"),
    path("studies/<uuid:study_id>/images/<uuid:image_id>/", views.study_image, name="study-image"),
    path("studies/<uuid:study_id>/images/<uuid:image_id>/heatmap/", views.study_heatmap, name="study-heatmap"),
    path("studies/<uuid:study_id>/images/<uuid:image_id>/dicom/", views.study_image_dicom, name="study-image-dicom"),
    path("studies/<uuid:study_id>/dicom-sr/", views.study_dicom_sr, name="study-dicom-sr"),
]
