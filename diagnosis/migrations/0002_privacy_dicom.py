"""The de-identified DICOM beside each image, and (on PostgreSQL) an append-only audit table.

The trigger refuses UPDATE and DELETE on audit events, except the one update Django makes when a
user is deleted (actor set to NULL, nothing else changed). TRUNCATE, which the test suite uses to
empty tables, fires no row trigger. A database owner can still disable the trigger; the hash chain
(`manage.py verify_audit`) is what detects that kind of tampering.
"""

import diagnosis.models
from django.db import migrations, models

APPEND_ONLY = """
CREATE OR REPLACE FUNCTION diagnosis_auditevent_append_only() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.actor_id IS NULL
       AND (to_jsonb(NEW) - 'actor_id') = (to_jsonb(OLD) - 'actor_id') THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'audit events are append-only: % refused', TG_OP USING ERRCODE = 'insufficient_privilege';
END
$$ LANGUAGE plpgsql;
CREATE TRIGGER diagnosis_auditevent_append_only BEFORE UPDATE OR DELETE ON diagnosis_auditevent
    FOR EACH ROW EXECUTE FUNCTION diagnosis_auditevent_append_only();
"""

REMOVE_APPEND_ONLY = """
DROP TRIGGER IF EXISTS diagnosis_auditevent_append_only ON diagnosis_auditevent;
DROP FUNCTION IF EXISTS diagnosis_auditevent_append_only();
"""


def _on_postgresql(sql):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(sql, params=None)  # no placeholders: the % belong to PL/pgSQL
    return run


class Migration(migrations.Migration):

    dependencies = [
        ("diagnosis", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="studyimage",
            name="dicom",
            field=models.FileField(blank=True, max_length=255, null=True, upload_to=diagnosis.models.dicom_upload_path),
        ),
        migrations.RunPython(_on_postgresql(APPEND_ONLY), _on_postgresql(REMOVE_APPEND_ONLY)),
    ]
