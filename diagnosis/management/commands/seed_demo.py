"""Create the demo accounts and patients (idempotent): admin, clinician, clinician2."""

import secrets
import shutil
from pathlib import Path

import numpy as np
import skimage.data
from PIL import Image

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management.base import BaseCommand
from django.db import transaction

from diagnosis import services
from diagnosis.inference import ModelUnavailable, serving_version
from diagnosis.models import Consent, Patient
from ml.data import class_label
from ml.phantoms import make_phantom

DEMO_PATIENTS = {"clinician": ["P-DEMOA001", "P-DEMOA002", "P-DEMOA003"],
                 "clinician2": ["P-DEMOB001", "P-DEMOB002", "P-DEMOB003"]}
NO_CONSENT_PATIENT = "P-DEMOA004"  # shows how the form explains a missing consent
IMAGES_PER_LABEL = 3
CLEAN_COLLECTION = "brain-mri"  # its class folders name each file's label
# Phantoms the release model labels correctly (checked by tests/diagnosis/test_audit_admin.py). Over 100 phantoms
# it does not (sensitivity 0.90, specificity 0.42): they show the workflow, not the model's accuracy.
DEMO_PHANTOM_SEEDS = {"tumor": (5, 6, 7), "notumor": (23, 39, 7)}
NOT_BRAIN_MRI = "not-a-brain-mri"  # a photograph (scikit-image's astronaut, public domain): the gate refuses it
# The patient of each kind of demo image; each image is submitted as a study for the clinician, so that a fresh
# `make run` shows each kind of result.
DEMO_STUDIES = (("tumor", "P-DEMOA001"), ("notumor", "P-DEMOA002"), (NOT_BRAIN_MRI, "P-DEMOA003"))


def held_out_slices(per_label: int) -> list[Path]:
    """A few real brain-mri slices from the served model's test split (never trained on), when the data is here."""
    try:
        test_files = serving_version().card.get("split", {}).get("test_files", [])
    except ModelUnavailable:
        return []
    collection = Path(settings.DATASET_DIR)
    prefix = f"{CLEAN_COLLECTION}/"
    names = [name.removeprefix(prefix) for name in test_files if name.startswith(prefix)]
    chosen = []
    for label in (1, 0):
        matching = [name for name in names if class_label(Path(name).parent.name) == label
                    and (collection / name).is_file()]
        step = max(len(matching) // per_label, 1)
        chosen += [collection / name for name in matching[::step][:per_label]]
    return chosen


def _write_phantoms(target: Path) -> None:
    for folder, seeds in DEMO_PHANTOM_SEEDS.items():
        (target / folder).mkdir(parents=True, exist_ok=True)
        for seed in seeds:
            pixels = np.rint(make_phantom(seed, tumor=folder == "tumor") * 255).astype(np.uint8)
            Image.fromarray(pixels).save(target / folder / f"phantom-{seed}.png")


def write_demo_images(target: Path) -> tuple[Path, str]:
    """Real held-out slices if the dataset is on this machine, else synthetic phantoms, and a photograph that is
    not a brain MRI slice; and what they are."""
    shutil.rmtree(target, ignore_errors=True)
    (target / NOT_BRAIN_MRI).mkdir(parents=True)
    Image.fromarray(skimage.data.astronaut()).save(target / NOT_BRAIN_MRI / "photograph.jpg", quality=90)
    slices = held_out_slices(IMAGES_PER_LABEL)
    if not slices:
        _write_phantoms(target)
        return target, ("synthetic phantoms (no MRI dataset on this machine): the release model labels these "
                        "correctly, but not phantoms in general; they show the workflow, not its accuracy")
    for path in slices:
        folder = target / ("tumor" if class_label(path.parent.name) else "notumor")
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, folder / f"{path.parent.name}-{path.name}")
    return target, f"real slices from the served model's held-out test split ({Path(settings.DATASET_DIR)})"


def submit_demo_studies(images: Path, clinician) -> int:
    """One study per demo image for the clinician, once each (an idempotency key per image); returns how many
    are new. Every image gets its own study, so the worklist shows what the model says of each, misses and
    false alarms included."""
    created = 0
    for folder, code in DEMO_STUDIES:
        for path in sorted((images / folder).iterdir()):
            upload = SimpleUploadedFile(path.name, path.read_bytes(),
                                        "image/jpeg" if path.suffix == ".jpg" else "image/png")
            submission = services.submit_study(user=clinician, patient=Patient.objects.get(code=code),
                                               uploads=[upload], via="command",
                                               idempotency_key=f"demo-{folder}-{path.name}"[:64])
            created += submission.created
    return created


class Command(BaseCommand):
    help = "Create demo accounts (admin, clinician, clinician2) and demo patients with consent. Safe to re-run."

    def handle(self, *args, **options):
        password = settings.DEMO_PASSWORD
        generated = password is None
        if generated:
            password = secrets.token_urlsafe(12)
        User = get_user_model()
        created_any = False
        with transaction.atomic():
            admin, created = self._user(User, "admin", password, staff=True, reset=not generated)
            created_any |= created
            for username, codes in DEMO_PATIENTS.items():
                clinician, created = self._user(User, username, password, staff=False, reset=not generated)
                created_any |= created
                for code in codes:
                    self._patient(code, clinician, admin, consent=True)
            self._patient(NO_CONSENT_PATIENT, User.objects.get(username="clinician"), admin, consent=False)
        images, description = write_demo_images(settings.VAR_DIR / "demo-images")
        new_studies = submit_demo_studies(images, User.objects.get(username="clinician"))
        self.stdout.write(self.style.SUCCESS("Demo accounts: admin, clinician, clinician2."))
        if generated and created_any:
            self.stdout.write(f"Their password (generated; set BRAINSCAN_DEMO_PASSWORD to choose one): {password}")
        elif generated:
            self.stdout.write("Existing accounts kept their passwords; set BRAINSCAN_DEMO_PASSWORD and re-run to "
                              "reset.")
        else:
            self.stdout.write("Their password is the value of BRAINSCAN_DEMO_PASSWORD.")
        self.stdout.write(f"Sample images to try the upload with, in {images}: {description}.")
        if new_studies:
            self.stdout.write(f"{new_studies} demo studies submitted for clinician (one per sample image: tumor, no "
                              "tumor, and a photograph the quality gate refuses); the worker assesses them when it "
                              "starts.")

    def _user(self, User, username, password, *, staff, reset):
        user, created = User.objects.get_or_create(username=username, defaults={"is_staff": staff,
                                                                                 "is_superuser": staff})
        if created or reset:
            user.set_password(password)
            user.save()
        return user, created

    def _patient(self, code, clinician, admin, *, consent):
        patient, created = Patient.objects.get_or_create(code=code)
        patient.care_team.add(clinician)
        if consent and not patient.has_active_consent(Consent.Scope.AI_ANALYSIS):
            services.grant_consent(patient=patient, actor=admin, via="command")
        return patient
