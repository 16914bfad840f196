"""`migrate`, one server at a time: web servers that start together (several replicas, several hosts)
would otherwise apply the same migrations concurrently and fail. On PostgreSQL they queue on an
advisory lock; the second finds nothing left to do. SQLite serves one machine, so plain migrate."""

from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.db import connection

MIGRATION_LOCK = 0x6272_6169_6E73  # an arbitrary 64-bit key ("brains") that only this command takes


class Command(BaseCommand):
    help = "Apply migrations under a PostgreSQL advisory lock, so concurrent starts do not collide."

    def handle(self, *args, **options):
        migrate = {"interactive": False, "verbosity": options["verbosity"]}
        if connection.vendor != "postgresql":
            call_command("migrate", **migrate)
            return
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s)", [MIGRATION_LOCK])
            try:
                call_command("migrate", **migrate)
            finally:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [MIGRATION_LOCK])
