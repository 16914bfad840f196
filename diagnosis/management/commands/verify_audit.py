"""python manage.py verify_audit: check that no audit event was changed or deleted in the database.

Exit status 0 when the chain is sound, 1 (with the first broken link) when it is not.
"""

from django.core.management.base import BaseCommand, CommandError

from diagnosis.audit import verify_chain


class Command(BaseCommand):
    help = "Verify the audit trail's hash chain; report the first broken link and exit non-zero if there is one."

    def handle(self, *args, **options):
        sound, broken = verify_chain()
        if broken is None:
            self.stdout.write(self.style.SUCCESS(f"Audit trail intact: {sound} events verified."))
            return
        where = f"at event {broken.event_id}" if broken.event_id else "at its end"
        before = "1 event before it is" if sound == 1 else f"{sound} events before it are"
        raise CommandError(f"Audit trail broken {where}: {broken.reason}. {before} sound.", returncode=1)
