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


def page_tree_pdf(levels: int, fanout: int = 2, cycle: bool = False, text: str = "page") -> bytes:
    """A tiny PDF whose page tree is `levels` of /Pages nodes, each listing the next one `fanout`
    times, over one real page: fanout^levels pages in about a kilobyte (or, with `cycle`, a tree
    whose deepest node lists the root)."""
    content = f"BT /F1 12 Tf 72 712 Td ({text}) Tj ET".encode()
    font = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"
    first_node, page_obj = 3, 2 + levels
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b""]  # 2: the root, written below
    nodes = [2, *range(first_node, first_node + levels - 1)]
    for i, node in enumerate(nodes):
        child = nodes[i + 1] if i + 1 < len(nodes) else page_obj
        kids = " ".join([f"{child} 0 R"] * fanout)
        if cycle and i + 1 == len(nodes):
            kids += " 2 0 R"
        body = f"<< /Type /Pages /Kids [{kids}] /Count {fanout ** (levels - i)} >>".encode()
        if node == 2:
            objects[1] = body
        else:
            objects.append(body)
    objects.append(
        f"<< /Type /Page /Parent {nodes[-1]} 0 R /MediaBox [0 0 612 792] /Contents "
        f"{page_obj + 1} 0 R /Resources << /Font << /F1 {page_obj + 2} 0 R >> >> >>".encode()
    )
    objects.append(b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream")
    objects.append(font)
    out, offsets = b"%PDF-1.4\n", []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return out
