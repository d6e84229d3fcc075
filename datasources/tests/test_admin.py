from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from datasources.models import Dataset


def test_admin_uploads_csv_as_dataset(admin_client):
    upload = SimpleUploadedFile("prices.csv", b"item,price\napple,1.5\npear,2\n", "text/csv")

    response = admin_client.post(
        reverse("admin:datasources_dataset_add"), {"name": "prices", "upload": upload}
    )

    assert response.status_code == 302
    dataset = Dataset.objects.get(name="prices")
    assert (dataset.row_count, dataset.column_count, dataset.version) == (2, 2, 1)
    assert dataset.uploaded_by.username == "admin"
    assert dataset.original_filename == "prices.csv"
    assert "prices.csv" not in dataset.file.name  # the server chose the stored name


def test_admin_refuses_unreadable_upload(admin_client):
    upload = SimpleUploadedFile("bad.csv", b"", "text/csv")

    response = admin_client.post(
        reverse("admin:datasources_dataset_add"), {"name": "bad", "upload": upload}
    )

    assert response.status_code == 200
    assert "The submitted file is empty" in response.content.decode()
    assert not Dataset.objects.exists()


def test_admin_shows_dataset_details(admin_client, make_dataset):
    import pandas as pd

    dataset = make_dataset(pd.DataFrame({"a": [1, 2], "b": ["x", "y"]}), "small")

    response = admin_client.get(reverse("admin:datasources_dataset_change", args=[dataset.pk]))

    assert response.status_code == 200
    assert dataset.checksum in response.content.decode()
