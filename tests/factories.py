"""Factories for the test data: users, patients with consent, studies with stored images."""

import hashlib
import io

import factory
import numpy as np
from django.contrib.auth import get_user_model
from django.core.files.base import ContentFile
from PIL import Image

from diagnosis.models import Consent, Patient, Study, StudyImage
from ml.phantoms import make_phantom

PASSWORD = "correct-horse-battery-staple"


def phantom_bytes(seed: int = 0, tumor: bool = True, fmt: str = "PNG", size: int = 224, mode: str = "L") -> bytes:
    """A synthetic slice encoded as an image file."""
    pixels = np.rint(make_phantom(seed, tumor, size) * 255).astype(np.uint8)
    image = Image.fromarray(pixels, mode="L").convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"clinician{n}")
    password = factory.PostGenerationMethodCall("set_password", PASSWORD)

    @factory.post_generation
    def save_password(obj, create, extracted, **kwargs):
        if create:
            obj.save()


class PatientFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Patient
        skip_postgeneration_save = True

    @factory.post_generation
    def care_team(obj, create, extracted, **kwargs):
        if create and extracted:
            obj.care_team.add(*extracted)

    @factory.post_generation
    def consent(obj, create, extracted, **kwargs):
        if create and extracted is not False:
            Consent.objects.create(patient=obj, scope=Consent.Scope.AI_ANALYSIS)


class StudyFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Study
        skip_postgeneration_save = True

    patient = factory.SubFactory(PatientFactory)
    submitted_by = factory.SubFactory(UserFactory)

    @factory.post_generation
    def images(obj, create, extracted, **kwargs):
        """images=N stores N phantom slices for the study."""
        if not create:
            return
        for position in range(extracted if extracted is not None else 1):
            png = phantom_bytes(seed=position, tumor=position % 2 == 0)
            image = StudyImage(study=obj, position=position, source_format="PNG", width=224, height=224,
                               sha256=hashlib.sha256(png).hexdigest())
            image.file.save("scan.png", ContentFile(png), save=False)
            image.save()
