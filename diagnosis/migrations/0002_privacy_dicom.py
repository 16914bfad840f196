"""The de-identified DICOM beside each image."""

import diagnosis.models
from django.db import migrations, models


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
    ]
