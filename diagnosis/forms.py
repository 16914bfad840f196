from django import forms

from diagnosis.models import Reading
from diagnosis.selectors import patients_for


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    """A file field that returns every selected file; each one is judged by the upload service."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("widget", MultipleFileInput(attrs={"accept": ".jpg,.jpeg,.png,.dcm,.zip,.nii,.gz,image/jpeg,"
                                                                       "image/png,application/dicom,application/zip"}))
        super().__init__(*args, **kwargs)

    def clean(self, data, initial=None):
        files = data if isinstance(data, (list, tuple)) else [data] if data else []
        if not files and self.required:
            raise forms.ValidationError("Choose at least one image to upload.", code="required")
        return list(files)


class PatientChoiceField(forms.ModelChoiceField):
    """Patients by their pseudonymous code: the page never shows a database id."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, to_field_name="code", **kwargs)

    def label_from_instance(self, patient):
        return patient.code if patient.has_consent else f"{patient.code} (no AI consent)"


class StudyForm(forms.Form):
    patient = PatientChoiceField(queryset=None, empty_label="Choose a patient",
                                 error_messages={"invalid_choice": "That patient is not on your list."})
    images = MultipleFileField(label="MRI images", help_text="JPEG, PNG or DICOM slices, or one series (DICOM files, a "
                                                             ".zip of them, or a NIfTI volume).")

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["patient"].queryset = patients_for(user)


class ReadingForm(forms.ModelForm):
    agrees_with_model = forms.TypedChoiceField(
        label="Do you agree with the model's result?", choices=[("yes", "Agree"), ("no", "Disagree")],
        coerce=lambda value: value == "yes", widget=forms.RadioSelect,
    )
    finding = forms.ChoiceField(label="Final finding", choices=[("", "Choose a finding"), *Reading.Finding.choices])

    class Meta:
        model = Reading
        fields = ["agrees_with_model", "finding", "comment"]
        labels = {"comment": "Comment (optional)"}
        widgets = {"comment": forms.Textarea(attrs={"rows": 3, "maxlength": 2000})}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:  # the radio choices are "yes"/"no", the stored answer a boolean
            self.initial["agrees_with_model"] = "yes" if self.instance.agrees_with_model else "no"
