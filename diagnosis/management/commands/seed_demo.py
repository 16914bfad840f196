"""Create the demo accounts and patients (idempotent): admin, clinician, clinician2."""

import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from diagnosis import services
from diagnosis.models import Consent, Patient
from ml.phantoms import write_phantom_folder

DEMO_PATIENTS = {"clinician": ["P-DEMOA001", "P-DEMOA002", "P-DEMOA003"],
                 "clinician2": ["P-DEMOB001", "P-DEMOB002", "P-DEMOB003"]}
NO_CONSENT_PATIENT = "P-DEMOA004"  # shows how the form explains a missing consent


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
        images = write_phantom_folder(settings.VAR_DIR / "demo-images", per_class=3, seed=7)
        self.stdout.write(self.style.SUCCESS("Demo accounts: admin, clinician, clinician2."))
        if generated and created_any:
            self.stdout.write(f"Their password (generated; set BRAINSCAN_DEMO_PASSWORD to choose one): {password}")
        elif generated:
            self.stdout.write("Existing accounts kept their passwords; set BRAINSCAN_DEMO_PASSWORD and re-run to reset.")
        else:
            self.stdout.write("Their password is the value of BRAINSCAN_DEMO_PASSWORD.")
        self.stdout.write(f"Synthetic sample images to try the upload with: {images}")

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
