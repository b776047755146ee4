"""Uploads through the real API: every file type, errors, dedup, limits, atomicity, permissions,
routing, and waiting for the coordizer."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from constellation.engine import pairwise_fisher_rao
from constellation.models import Kernel
from learning import services as job_services
from learning.models import FineTuneJob, JobKind
from tests.uploads import small
from tests.uploads.conftest import media_files, page_tree_pdf, pdf_bytes, upload_file
from uploads import services, tasks
from uploads.models import KnowledgeChunk, KnowledgeFile

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(180)]

URL = "/api/v1/uploads/"
TEXT = "\n\n".join(small.corpus()[:12])


def post(client, *files, **fields):
    return client.post(URL, {"file": list(files), **fields}, format="multipart")


def only(response) -> dict:
    body = response.json()
    assert len(body["results"]) == 1, body
    return body["results"][0]


def test_a_text_file_is_chunked_embedded_and_routed(dev_api, coordizer, data, developer) -> None:
    response = post(dev_api, upload_file("notes.txt", TEXT.encode(), "text/plain"))
    assert response.status_code == 201, response.json()
    result = only(response)
    assert result["error"] is None and result["duplicate"] is False
    upload = result["upload"]
    assert upload["status"] == "ready" and upload["status_detail"] == ""
    assert upload["file_type"] == "txt" and upload["content_type"] == "text/plain"
    assert upload["size_bytes"] == len(TEXT.encode()) and upload["uploaded_by"] == "dev"
    assert upload["n_records"] == 1 and upload["n_characters"] == len(TEXT)
    assert upload["preview"] == TEXT[:2000]
    coordizer_model = small.coordizer()
    assert upload["n_tokens"] == len(coordizer_model.encode(TEXT))
    assert upload["n_chunks"] == KnowledgeChunk.objects.filter(upload_id=upload["id"]).count() > 1
    assert [r["kernel"] for r in upload["routed"]] and len(upload["routed"]) == 2
    chunks = dev_api.get(f"{URL}{upload['id']}/chunks/").json()
    assert chunks["count"] == upload["n_chunks"]
    first = chunks["results"][0]
    assert first["index"] == 0 and first["n_tokens"] == 256 and TEXT.startswith(first["text"])
    assert len(first["basin"]) == 64 and sum(first["basin"]) == pytest.approx(1.0, abs=1e-5)
    ids = coordizer_model.encode(TEXT)[:256]
    assert np.allclose(first["basin"], coordizer_model.basin_of_ids(ids), atol=1e-6)
    listed = dev_api.get(URL).json()
    assert listed["count"] == 1 and listed["results"][0]["id"] == upload["id"]
    stored = KnowledgeFile.objects.get(pk=upload["id"])
    assert Path(stored.file.path).read_bytes() == TEXT.encode()


def test_markdown_and_html_are_extracted(dev_api, coordizer) -> None:
    html = (
        "<!doctype html><html><head><title>Guide</title><style>p{color:red}</style>"
        "<script>var secret = 1;</script></head><body><h1>Routing &amp; basins</h1>"
        "<p>Kernels learn <b>geometry</b>.</p><noscript>no js</noscript><p>Second.</p></body>"
        "</html>"
    )
    response = post(
        dev_api,
        upload_file("guide.md", b"# Title\n\nSome *markdown* text."),
        upload_file("page.html", html.encode()),
    )
    assert response.status_code == 201, response.json()
    md, page = (r["upload"] for r in response.json()["results"])
    assert md["file_type"] == "md" and md["preview"] == "# Title\n\nSome *markdown* text."
    assert page["file_type"] == "html"
    assert page["preview"] == "Guide\n\nRouting & basins\n\nKernels learn geometry.\n\nSecond."
    for hidden in ("secret", "color", "no js", "<"):
        assert hidden not in page["preview"]


def test_a_pdf_is_extracted_and_an_encrypted_or_empty_one_is_refused(dev_api, coordizer, data):
    response = post(
        dev_api,
        upload_file("paper.pdf", pdf_bytes(["Fisher Rao distance", "on the simplex"])),
        upload_file("locked.pdf", pdf_bytes(["hidden"], password="s3cret")),
        upload_file("scan.pdf", pdf_bytes([])),
        upload_file("fake.pdf", b"hello, not a pdf"),
    )
    assert response.status_code == 207
    paper, locked, scan, fake = response.json()["results"]
    assert paper["upload"]["file_type"] == "pdf" and paper["error"] is None
    assert paper["upload"]["preview"] == "Fisher Rao distance\non the simplex"
    assert locked["upload"] is None and locked["error"].startswith("encrypted PDF")
    assert "password" in locked["error"]
    assert scan["error"].startswith("no text") and "OCR" in scan["error"]
    assert fake["error"].startswith("not a PDF")
    assert KnowledgeFile.objects.count() == 1
    assert len(media_files(data)) == 2  # the one PDF and its records


def test_a_pdf_past_its_limits_is_refused_quickly_saying_which(
    dev_api, coordizer, data, settings
) -> None:
    """A 2 KB page tree of 2^17 pages once took the web process a minute (or raised a 500);
    pages, characters and seconds are limited, each refusal names its setting."""
    settings.UPLOAD_MAX_CHARS, settings.UPLOAD_PDF_MAX_S = 3000, 60.0
    started = time.monotonic()
    response = post(
        dev_api,
        upload_file("bomb.pdf", page_tree_pdf(17)),
        upload_file("loop.pdf", page_tree_pdf(4, cycle=True)),
        upload_file("long.pdf", page_tree_pdf(1, fanout=1500, text="x" * 80)),
        upload_file("fine.pdf", page_tree_pdf(3, text="eight pages of geometry")),
    )
    assert time.monotonic() - started < 20
    bomb, loop, long, fine = response.json()["results"]
    assert bomb["error"] == (
        "the PDF has more than 2000 pages, the limit (QIG_UPLOAD_PDF_MAX_PAGES): split it into "
        "smaller files"
    )
    assert loop["error"].startswith("not a readable PDF") and "cyclic" in loop["error"]
    assert long["error"].startswith("the PDF's text passes 3,000 characters by page 38")
    assert "QIG_UPLOAD_MAX_CHARS" in long["error"]
    assert fine["error"] is None and fine["upload"]["file_type"] == "pdf"
    settings.UPLOAD_PDF_MAX_S = 0.05
    slow = only(post(dev_api, upload_file("slow.pdf", page_tree_pdf(1, fanout=1500))))
    assert "took more than 0.05 s to extract" in slow["error"]
    assert "QIG_UPLOAD_PDF_MAX_S" in slow["error"]
    assert KnowledgeFile.objects.count() == 1  # nothing half-stored


def test_jsonl_accepts_three_shapes_and_names_the_bad_line(dev_api, coordizer, data) -> None:
    records = [
        {"text": "plain text record"},
        {"prompt": "What is a basin?", "completion": "A point on the simplex."},
        {
            "messages": [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": "hello"},
            ]
        },
    ]
    good = "\n".join(json.dumps(r) for r in records) + "\n\n"
    response = post(dev_api, upload_file("data.jsonl", good.encode()))
    assert response.status_code == 201, response.json()
    upload = only(response)["upload"]
    assert upload["file_type"] == "jsonl" and upload["n_records"] == 3
    assert services.records_of(KnowledgeFile.objects.get(pk=upload["id"])) == records
    assert "user: hi\nassistant: hello" in upload["preview"]
    for body, message in [
        ('{"text": "ok"}\n{"text": broken}\n', "line 2: invalid JSON"),
        ('{"text": "ok"}\n\n{"question": "?"}\n', 'line 3: expected an object with "text"'),
        ('{"prompt": "only a prompt"}\n', 'line 1: "prompt" and "completion"'),
        ('{"messages": [{"role": "user"}]}\n', "line 1: messages[0]"),
        ("[1, 2]\n", "line 1: expected a JSON object"),
    ]:
        result = only(post(dev_api, upload_file("bad.jsonl", body.encode())))
        assert result["error"].startswith(message), result["error"]
    assert KnowledgeFile.objects.count() == 1 and len(media_files(data)) == 2


def test_csv_uses_the_text_column_or_lists_the_columns(dev_api, coordizer) -> None:
    body = b'id,body,label\n1,"First row, with a comma",a\n2,Second row,b\n3,,c\n'
    refused = only(post(dev_api, upload_file("rows.csv", body)))
    assert refused["upload"] is None
    assert refused["error"] == (
        "CSV has no column named 'text': choose the text column (text_column); its columns are "
        "'id', 'body', 'label'"
    )
    wrong = only(post(dev_api, upload_file("rows.csv", body), text_column="content"))
    assert "no column 'content'" in wrong["error"] and "'body'" in wrong["error"]
    chosen = only(post(dev_api, upload_file("rows.csv", body), text_column="body"))
    assert chosen["upload"]["n_records"] == 2
    assert chosen["upload"]["preview"] == "First row, with a comma\n\nSecond row"
    default = only(post(dev_api, upload_file("t.csv", b"n;Text\n1;semicolons work\n")))
    assert default["upload"]["preview"] == "semicolons work"


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("report.docx", b"PK\x03\x04 zip", "unsupported file type '.docx': supported types are"),
        ("blob", b"\x00\x01\x02binary", "unsupported file type: binary content"),
        ("latin.txt", "café".encode("latin-1"), "the file is not UTF-8 text: byte 0xe9"),
        ("empty.txt", b"  \n\t\n", "no text: the file is empty or only whitespace"),
        ("page.html", b"<html><script>x()</script></html>", "no text: the HTML"),
    ],
)
def test_unusable_files_get_a_clear_error_and_store_nothing(
    dev_api, coordizer, data, name, content, message
) -> None:
    response = post(dev_api, upload_file(name, content))
    assert response.status_code == 400
    result = only(response)
    assert result["upload"] is None and result["error"].startswith(message), result["error"]
    assert not KnowledgeFile.objects.exists() and media_files(data) == []


def test_an_upload_without_extension_is_sniffed(dev_api, coordizer) -> None:
    response = post(dev_api, upload_file("README", b'{"text": "a record"}\n'))
    assert only(response)["upload"]["file_type"] == "jsonl"


def test_the_same_bytes_again_link_to_the_existing_upload(dev_api, admin_api, coordizer, data):
    first = only(post(dev_api, upload_file("a.txt", TEXT.encode())))
    again = only(post(admin_api, upload_file("renamed.txt", TEXT.encode()), domain="ETHICS"))
    assert again["duplicate"] is True and again["error"] is None
    assert again["upload"]["id"] == first["upload"]["id"]
    assert again["upload"]["original_name"] == "a.txt"
    assert KnowledgeFile.objects.count() == 1
    assert len(media_files(data)) == 2


def test_a_file_over_the_limit_is_refused_while_streaming(dev_api, coordizer, data, settings):
    settings.MAX_UPLOAD_MB = 0.01  # 10 KiB
    big = upload_file("big.txt", b"x " * 20_000)
    response = post(dev_api, big)
    assert response.status_code == 413
    assert "the limit is 0.01 MB (QIG_MAX_UPLOAD_MB)" in only(response)["error"]
    mixed = post(dev_api, upload_file("big.txt", b"y " * 20_000), upload_file("ok.txt", b"fine"))
    assert mixed.status_code == 207
    assert [r["error"] is None for r in mixed.json()["results"]] == [False, True]
    assert KnowledgeFile.objects.count() == 1 and len(media_files(data)) == 2


def test_every_file_failing_is_a_400(dev_api, coordizer) -> None:
    response = post(dev_api, upload_file("a.docx", b"x"), upload_file("b.txt", b""))
    assert response.status_code == 400 and len(response.json()["results"]) == 2


def test_a_failure_while_storing_leaves_no_row_and_no_file(dev_api, coordizer, data, monkeypatch):
    def broken(upload, chunks):
        raise RuntimeError("disk full while writing chunks")

    monkeypatch.setattr(services, "_chunk_rows", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        post(dev_api, upload_file("notes.txt", TEXT.encode()))
    assert not KnowledgeFile.objects.exists() and not KnowledgeChunk.objects.exists()
    assert media_files(data) == []


def test_bad_form_fields_are_refused_before_anything_is_stored(dev_api, coordizer, data) -> None:
    for fields, message in [
        ({"domain": "NOWHERE"}, "domain must be 'auto' or one of HEART"),
        ({"priority": "101"}, "priority must be between -100 and 100"),
        ({"priority": "high"}, "priority must be an integer"),
        ({"train": "maybe"}, "train must be true or false"),
    ]:
        response = post(dev_api, upload_file("a.txt", b"text"), **fields)
        assert response.status_code == 400 and response.json()["detail"].startswith(message)
    empty = dev_api.post(URL, {"files": upload_file("a.txt", b"misnamed")}, format="multipart")
    assert empty.status_code == 400 and "no file" in empty.json()["detail"]
    assert not list((data / "media").rglob("*.part"))
    assert not KnowledgeFile.objects.exists() and media_files(data) == []


def test_permissions(
    anon_api, dev_api, admin_api, coordizer, data, django_capture_on_commit_callbacks
) -> None:
    assert post(anon_api, upload_file("a.txt", b"text")).status_code == 401
    refused = post(dev_api, upload_file("a.txt", b"some text"), train="true")
    assert refused.status_code == 403 and not KnowledgeFile.objects.exists()
    mine = only(post(dev_api, upload_file("mine.txt", b"my text")))["upload"]
    theirs = only(post(admin_api, upload_file("theirs.txt", b"their text")))["upload"]
    assert dev_api.delete(f"{URL}{theirs['id']}/").status_code == 403
    directory = Path(KnowledgeFile.objects.get(pk=mine["id"]).file.path).parent
    assert directory.is_dir()
    with django_capture_on_commit_callbacks(execute=True):
        assert dev_api.delete(f"{URL}{mine['id']}/").status_code == 204
    assert not directory.exists()
    job = job_services.queue_job(kind=JobKind.ADAPTER, created_by=None, dataset_ids=[theirs["id"]])
    conflict = admin_api.delete(f"{URL}{theirs['id']}/")
    assert conflict.status_code == 409 and f"job {job.pk} (queued)" in conflict.json()["detail"]
    job.cancel()
    with django_capture_on_commit_callbacks(execute=True):
        assert admin_api.delete(f"{URL}{theirs['id']}/").status_code == 204
    assert not KnowledgeFile.objects.exists() and media_files(data) == []


def _anchors(role: str | None = None) -> tuple[list[int], np.ndarray]:
    kernels = Kernel.objects.all() if role is None else Kernel.objects.filter(role=role)
    rows = list(kernels.order_by("index").values_list("index", "anchor"))
    return [i for i, _ in rows], np.array([a for _, a in rows])


def test_routing_by_domain_and_auto(dev_api, coordizer, settings) -> None:
    settings.UPLOAD_ROUTE_K = 3
    auto = only(post(dev_api, upload_file("a.txt", TEXT.encode())))["upload"]
    heart = only(post(dev_api, upload_file("b.txt", (TEXT + " more").encode()), domain="heart"))
    heart = heart["upload"]
    assert heart["domain"] == "HEART" and auto["domain"] == "auto"
    for upload, role in [(auto, None), (heart, "HEART")]:
        basin = np.asarray(KnowledgeFile.objects.get(pk=upload["id"]).basin)
        indices, anchors = _anchors(role)
        distances = pairwise_fisher_rao(basin, anchors)[0]
        order = np.argsort(distances)[:3]
        assert [r["kernel"] for r in upload["routed"]] == [indices[i] for i in order]
        got = [r["distance"] for r in upload["routed"]]
        assert got == sorted(got) and np.allclose(got, distances[order])
        if role:
            assert {r["role"] for r in upload["routed"]} == {role}
    assert len(_anchors()[0]) == 240 and 3 < len(_anchors("HEART")[0]) < 240


def test_an_upload_waits_for_the_coordizer_then_is_processed(dev_api, data) -> None:
    response = post(dev_api, upload_file("early.txt", TEXT.encode()))
    assert response.status_code == 201
    upload = only(response)["upload"]
    assert upload["status"] == "pending"
    assert upload["status_detail"] == "waiting for the coordizer"
    assert upload["n_chunks"] == 0 and upload["routed"] == [] and upload["preview"]
    assert tasks.process_pending() == []  # still no coordizer: nothing to do
    small.save_coordizer(data / "models")
    assert tasks.process_pending() == [upload["id"]]
    ready = dev_api.get(f"{URL}{upload['id']}/").json()
    assert ready["status"] == "ready" and ready["status_detail"] == ""
    assert ready["n_chunks"] > 1 and len(ready["routed"]) == 2
    assert ready["n_tokens"] == len(small.coordizer().encode(TEXT))
    assert tasks.process_pending() == []


def test_staff_train_queues_one_adapter_job_for_the_routed_kernels(admin_api, coordizer) -> None:
    response = post(
        admin_api,
        upload_file("a.txt", TEXT.encode()),
        upload_file("b.jsonl", b'{"prompt": "p", "completion": "c"}\n'),
        upload_file("c.docx", b"nope"),
        domain="MEMORY",
        priority="7",
        train="true",
    )
    assert response.status_code == 207
    body = response.json()
    routed = {r["kernel"] for res in body["results"][:2] for r in res["upload"]["routed"]}
    job = FineTuneJob.objects.get()
    assert body["job"]["id"] == job.pk and body["job_error"] is None
    assert job.kind == JobKind.ADAPTER and job.priority == 7
    assert set(job.target_kernels) == routed and len(routed) >= 2
    assert sorted(job.datasets.values_list("pk", flat=True)) == sorted(
        res["upload"]["id"] for res in body["results"][:2]
    )
    assert set(Kernel.objects.filter(index__in=routed).values_list("role", flat=True)) == {"MEMORY"}


def test_train_before_the_coordizer_stores_the_files_and_says_why_no_job(admin_api, data):
    response = post(admin_api, upload_file("a.txt", b"early text"), train="true")
    assert response.status_code == 201
    body = response.json()
    assert body["job"] is None and "not routed yet" in body["job_error"]
    assert KnowledgeFile.objects.get().status == "pending"


def test_an_adapter_job_without_targets_takes_its_uploads_routed_kernels(
    admin_api, dev_api, coordizer
) -> None:
    a = only(post(dev_api, upload_file("a.txt", TEXT.encode()), domain="ETHICS"))["upload"]
    b = only(post(dev_api, upload_file("b.txt", b"another short text"), domain="META"))["upload"]
    response = admin_api.post(
        "/api/v1/jobs/", {"kind": "adapter", "datasets": [a["id"], b["id"]]}, format="json"
    )
    assert response.status_code == 201, response.json()
    expected = sorted({r["kernel"] for r in a["routed"] + b["routed"]})
    assert response.json()["target_kernels"] == expected and len(expected) == 4
    chosen = admin_api.post(
        "/api/v1/jobs/",
        {"kind": "adapter", "datasets": [a["id"]], "target_kernels": [5]},
        format="json",
    )
    assert chosen.json()["target_kernels"] == [5]


def test_a_pending_upload_whose_records_are_gone_fails_with_the_reason(dev_api, data) -> None:
    upload = only(post(dev_api, upload_file("early.txt", TEXT.encode())))["upload"]
    stored = KnowledgeFile.objects.get(pk=upload["id"])
    (data / "media" / stored.records_name).unlink()
    small.save_coordizer(data / "models")
    assert tasks.process_pending() == [upload["id"]]
    failed = dev_api.get(f"{URL}{upload['id']}/").json()
    assert failed["status"] == "failed" and "extracted records are missing" in failed["error"]
