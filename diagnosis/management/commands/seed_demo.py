"""Create the demo accounts and patients (idempotent): admin, clinician, clinician2."""

import secrets
import shutil
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from diagnosis import services
from diagnosis.inference import ModelUnavailable, serving_version
from diagnosis.models import Consent, Patient
from ml.data import class_label
from ml.phantoms import write_phantom_folder

DEMO_PATIENTS = {"clinician": ["P-DEMOA001", "P-DEMOA002", "P-DEMOA003"],
                 "clinician2": ["P-DEMOB001", "P-DEMOB002", "P-DEMOB003"]}
NO_CONSENT_PATIENT = "P-DEMOA004"  # shows how the form explains a missing consent
IMAGES_PER_LABEL = 3


def held_out_slices(per_label: int) -> list[Path]:
    """A few real slices from the served model's test split (never trained on), when the data is here."""
    try:
        test_files = serving_version().card.get("split", {}).get("test_files", [])
    except ModelUnavailable:
        return []
    dataset = Path(settings.DATASET_DIR)
    chosen = []
    for label in (1, 0):
        matching = [name for name in test_files if class_label(Path(name).parent.name) == label
                    and (dataset / name).is_file()]
        step = max(len(matching) // per_label, 1)
        chosen += [dataset / name for name in matching[::step][:per_label]]
    return chosen


def write_demo_images(target: Path) -> tuple[Path, str]:
    """Real held-out slices if the dataset is on this machine, else synthetic phantoms; and what they are."""
    shutil.rmtree(target, ignore_errors=True)
    slices = held_out_slices(IMAGES_PER_LABEL)
    if not slices:
        write_phantom_folder(target, per_class=IMAGES_PER_LABEL, seed=7)
        return target, ("synthetic phantoms (no MRI dataset on this machine); the release model, trained on "
                        "real MRI, does not read them reliably")
    for path in slices:
        folder = target / ("tumor" if class_label(path.parent.name) else "notumor")
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, folder / f"{path.parent.name}-{path.name}")
    return target, f"real slices from the served model's held-out test split ({Path(settings.DATASET_DIR)})"


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
        self.stdout.write(self.style.SUCCESS("Demo accounts: admin, clinician, clinician2."))
        if generated and created_any:
            self.stdout.write(f"Their password (generated; set BRAINSCAN_DEMO_PASSWORD to choose one): {password}")
        elif generated:
            self.stdout.write("Existing accounts kept their passwords; set BRAINSCAN_DEMO_PASSWORD and re-run to "
                              "reset.")
        else:
            self.stdout.write("Their password is the value of BRAINSCAN_DEMO_PASSWORD.")
        self.stdout.write(f"Sample images to try the upload with, in {images}: {description}.")

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
