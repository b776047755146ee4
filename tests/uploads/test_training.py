"""An adapter job queued from uploads trains, for real, on the records extracted from them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from constellation.engine import Trunk, save_trunk, trunk_preset
from constellation.models import Kernel, KernelStatus
from learning import datasets, runner
from learning.models import FineTuneJob, JobStatus
from learning.runs import InvalidJob
from learning.services import validate_hyperparameters
from tests.uploads import small
from tests.uploads.conftest import upload_file

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(300)]


def test_an_adapter_job_trains_on_the_uploads_records(admin_api, coordizer, data: Path) -> None:
    save_trunk(Trunk(trunk_preset("tiny", vocab_size=512)), data / "models" / "trunk")
    text = "\n\n".join(small.corpus()[:6])
    html = f"<html><head><script>var x = 'never trained';</script></head><body><p>{text}</p>"
    pairs = [{"prompt": f"question {i}?", "completion": f"answer {i}."} for i in range(20)]
    jsonl = "\n".join(json.dumps(p) for p in pairs)
    response = admin_api.post(
        "/api/v1/uploads/",
        {
            "file": [
                upload_file("page.html", html.encode()),
                upload_file("qa.jsonl", jsonl.encode()),
            ],
            "train": "true",
            "domain": "PREDICTION",
        },
        format="multipart",
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    page, qa = (r["upload"] for r in body["results"])
    job = FineTuneJob.objects.get(pk=body["job"]["id"])
    routed = sorted({r["kernel"] for r in page["routed"] + qa["routed"]})
    assert job.target_kernels == routed

    examples: list[Any] = datasets.dataset_examples(job)
    assert list(examples[0]) == ["text"] and examples[0]["text"].startswith(page["preview"])
    assert "never trained" not in str(examples) and "<p>" not in examples[0]["text"]
    assert examples[1:] == pairs  # prompt/completion kept: the loss is on the completion only

    job.hyperparameters = validate_hyperparameters(
        {"steps": 4, "batch_size": 2, "seq_len": 32, "phi_every": 2}
    )
    job.save(update_fields=["hyperparameters"])
    assert runner.run_next_job("test@host:1") == job.pk
    job.refresh_from_db()
    assert job.status == JobStatus.COMPLETED, job.error
    assert job.step == 4 * len(routed)
    for kernel in Kernel.objects.filter(index__in=routed):
        assert kernel.status == KernelStatus.ACTIVE and kernel.role == "PREDICTION"


def test_a_job_whose_upload_lost_its_records_fails_clearly(admin_api, coordizer, data) -> None:
    response = admin_api.post(
        "/api/v1/uploads/",
        {"file": [upload_file("a.txt", b"some words to learn")], "train": "true"},
        format="multipart",
    )
    job = FineTuneJob.objects.get(pk=response.json()["job"]["id"])
    upload = job.datasets.get()
    (Path(data / "media") / upload.records_name).unlink()
    with pytest.raises(InvalidJob, match=r"upload \d+ \(a.txt\): its extracted records"):
        datasets.dataset_examples(job)
