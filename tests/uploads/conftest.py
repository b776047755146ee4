"""Upload tests: their own media and models directories, and real files built in the test."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from pypdf import PdfWriter
from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject

from tests.uploads import small


@pytest.fixture
def data(settings, tmp_path: Path) -> Path:
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.MODELS_DIR = tmp_path / "models"
    settings.CHECKPOINTS_DIR = tmp_path / "checkpoints"
    settings.TRAIN_DEVICE = "cpu"
    settings.TRAIN_THREADS = 1
    return tmp_path


@pytest.fixture
def coordizer(data: Path) -> Path:
    return small.save_coordizer(data / "models")


def media_files(data: Path) -> list[Path]:
    """Every file kept under the media root (the in-flight area excluded: it must be empty)."""
    root = data / "media"
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def upload_file(name: str, content: bytes, content_type: str = "") -> SimpleUploadedFile:
    return SimpleUploadedFile(
        name, content, content_type=content_type or "application/octet-stream"
    )


def pdf_bytes(lines: list[str], password: str | None = None) -> bytes:
    """A real one-page PDF whose text is `lines` (Helvetica), optionally encrypted (AES-128)."""
    writer = PdfWriter()
    page = writer.add_blank_page(612, 792)
    if lines:
        font = DictionaryObject(
            {
                NameObject("/Type"): NameObject("/Font"),
                NameObject("/Subtype"): NameObject("/Type1"),
                NameObject("/BaseFont"): NameObject("/Helvetica"),
            }
        )
        fonts = DictionaryObject({NameObject("/F1"): writer._add_object(font)})
        page[NameObject("/Resources")] = DictionaryObject({NameObject("/Font"): fonts})
        ops = "BT /F1 12 Tf 72 720 Td 14 TL " + " ".join(f"({line}) '" for line in lines) + " ET"
        stream = DecodedStreamObject()
        stream.set_data(ops.encode("latin-1"))
        page[NameObject("/Contents")] = writer._add_object(stream)
    if password:
        writer.encrypt(user_password=password, owner_password="owner", algorithm="AES-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()
