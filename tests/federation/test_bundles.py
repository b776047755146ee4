"""Update bundles in one process (issue 14 item 2): central publishes a signed bundle of a real
tiny model's adapter; the edge's checks refuse a tampered manifest, a bad hash and another
trunk; a verified bundle is applied as the kernel's served version; sleep packets (learnings)
are checked, stored once per digest and refused when forged. The same with real processes over
HTTP and the websocket: tests/federation/test_bundles_live.py."""

from __future__ import annotations

import hashlib
import json
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import torch

from constellation import published
from constellation.engine import tiny
from constellation.models import Kernel
from constellation.services import ensure_kernels
from federation import bundle_edge, bundles, learnings, packets
from federation.bundle_models import Bundle, ReceivedLearning
from federation.models import EdgeState, Node
from federation.patterns import make

KERNEL = tiny.ADAPTER_KERNEL


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return tiny.make_trained_model(tmp_path_factory.mktemp("bundle-model"), steps=40)


@pytest.fixture
def central(settings: Any, tmp_path: Path, trained: Path) -> Path:
    settings.FEDERATION = "central"
    settings.FEDERATION_SIZE = "full"
    settings.DATA_DIR = tmp_path / "central"
    settings.MODELS_DIR = settings.DATA_DIR / "models"
    shutil.copytree(trained, settings.MODELS_DIR)
    ensure_kernels()
    return Path(settings.DATA_DIR)


def manifest_bytes(row: Bundle) -> bytes:
    return (bundles.bundle_path(row.version or 0) / bundles.MANIFEST).read_bytes()


def central_key() -> str:
    from federation import keys

    return packets.public_text(keys.central_key())


@pytest.mark.django_db
def test_central_publishes_a_signed_bundle_with_every_files_hash(central: Path) -> None:
    row = bundles.publish_bundle([KERNEL, 5], "admin")  # kernel 5 has no adapter: left out
    assert row.version == 1 and row.kernels == [KERNEL] and row.status == "published"
    manifest = json.loads(manifest_bytes(row))
    assert manifest["trunk"] == published.trunk_fingerprint()
    assert manifest["trunk"].startswith("sha256:")
    folder = bundles.bundle_path(1)
    for name, spec in manifest["files"].items():
        data = (folder / name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == spec["sha256"] and len(data) == spec["bytes"]
    assert f"kernels/{KERNEL}/adapter.safetensors" in manifest["files"]
    verified = bundle_edge.verify_manifest(
        manifest_bytes(row), 1, bundles.notice(row)["manifest_sha256"], central_key()
    )
    assert verified["kernels"] == [KERNEL]
    assert bundles.publish_bundle([KERNEL], "admin").version == 2
    with pytest.raises(bundles.BundleError, match="has a trained adapter"):
        bundles.publish_bundle([7], "admin")


@pytest.mark.django_db
def test_the_edge_refuses_a_tampered_manifest_a_bad_hash_and_another_trunk(
    central: Path, settings: Any, trained: Path
) -> None:
    row = bundles.publish_bundle([KERNEL], "admin")
    raw, key = manifest_bytes(row), central_key()
    sha = hashlib.sha256(raw).hexdigest()
    forged = json.loads(raw)
    forged["kernels"] = [KERNEL, 9]
    with pytest.raises(bundle_edge.Refused, match="bad signature"):
        bundle_edge.verify_manifest(json.dumps(forged).encode(), 1, None, key)
    with pytest.raises(bundle_edge.Refused, match="bad hash"):
        bundle_edge.verify_manifest(raw, 1, "0" * 64, key)
    other = packets.public_text(packets.new_key())
    with pytest.raises(bundle_edge.Refused, match="bad signature"):
        bundle_edge.verify_manifest(raw, 1, sha, other)
    with pytest.raises(bundle_edge.Refused, match="version"):
        bundle_edge.verify_manifest(raw, 2, sha, key)
    # Another trunk: the edge's own pretraining (one more step) gives another fingerprint.
    settings.MODELS_DIR = central / "other-models"
    with torch.random.fork_rng(devices=[]):
        tiny.make_trained_model(central / "other", steps=41)
    shutil.copytree(central / "other" / "models", settings.MODELS_DIR)
    with pytest.raises(bundle_edge.Refused, match="another trunk"):
        bundle_edge.verify_manifest(raw, 1, sha, key)


@pytest.mark.django_db
def test_a_verified_bundle_becomes_the_kernels_served_version(
    central: Path, settings: Any, trained: Path, django_capture_on_commit_callbacks: Any
) -> None:
    row = bundles.publish_bundle([KERNEL], "admin")
    key = central_key()
    copied = central / "incoming-copy"
    shutil.copytree(bundles.bundle_path(row.version or 0), copied)
    Bundle.objects.all().delete()  # the edge's own rows, in this one database
    # The edge: the same trunk (copied, as docs/federation.md says), no adapter of its own.
    settings.FEDERATION, settings.FEDERATION_SIZE = "edge", "full"
    settings.DATA_DIR = central.parent / "edge"
    settings.MODELS_DIR = settings.DATA_DIR / "models"
    shutil.copytree(trained, settings.MODELS_DIR)
    shutil.rmtree(settings.MODELS_DIR / "kernels")
    EdgeState.objects.update_or_create(
        pk=1, defaults={"node_uuid": str(uuid.uuid4()), "central_key": key, "size": "full"}
    )
    manifest = bundle_edge.verify_manifest((copied / "manifest.json").read_bytes(), 1, None, key)
    with django_capture_on_commit_callbacks(execute=True):  # the swap waits for the commit
        said = bundle_edge.install(copied, manifest, time.perf_counter())
    assert said["status"] == "applied"
    meta = published.kernel_meta(KERNEL)
    assert meta is not None and meta["bundle"] == 1
    served = published.kernel_dir(KERNEL).resolve() / "adapter.safetensors"
    original = trained / "kernels" / str(KERNEL) / "adapter.safetensors"
    from safetensors.torch import load_file

    mine, theirs = load_file(str(served)), load_file(str(original))
    assert mine.keys() == theirs.keys()
    assert all(torch.equal(mine[k], theirs[k]) for k in mine)
    assert EdgeState.get().bundle_version == 1
    assert Kernel.objects.get(index=KERNEL).status == "active"
    assert bundle_edge.report()["version"] == 1
    with pytest.raises(bundle_edge.Refused, match="no earlier bundle"):
        bundle_edge.rollback()
    # A second bundle replaces it; rolling back runs the first again, from its kept files.
    second = central / "second"
    shutil.copytree(bundle_edge.bundles_dir() / "1", second)
    manifest2 = json.loads((second / "manifest.json").read_bytes())
    manifest2["version"] = 2
    manifest2.pop("sig")
    from federation import keys

    signed = packets.sign(manifest2, keys.central_key(), "bundle")
    (second / "manifest.json").write_text(json.dumps(signed))
    with django_capture_on_commit_callbacks(execute=True):
        bundle_edge.install(second, signed, time.perf_counter())
    assert EdgeState.get().bundle_version == 2
    assert Bundle.objects.get(version=1).status == "replaced"
    with django_capture_on_commit_callbacks(execute=True):
        said = bundle_edge.rollback()
    assert said["version"] == 1 and EdgeState.get().bundle_version == 1
    assert published.kernel_meta(KERNEL)["bundle"] == 1  # type: ignore[index]
    assert Bundle.objects.get(version=2).status == "replaced"


# ---- sleep packets ------------------------------------------------------------------------------
def learnings_message(node: Node, key: Any, items: list[dict[str, Any]], **over: Any) -> str:
    body = {"v": 1, "type": "learnings", "node": str(node.uuid), "id": str(uuid.uuid4()),
            "items": items, **over}  # fmt: skip
    return learnings.signed(body, key, time.time())


@pytest.mark.django_db
def test_central_keeps_each_learning_once_and_refuses_forged_ones(settings: Any) -> None:
    settings.FEDERATION = "central"
    settings.FEDERATION_BUNDLE_MIN_LEARNINGS = 0  # no training here
    key = packets.new_key()
    node = Node.objects.create(name="edge-a", size="minimal", public_key=packets.public_text(key))
    public = packets.load_public(node.public_key)
    item = make(13, "correction", "Q: where?", " In the copper tower.", 0.9).as_dict()
    raw = learnings_message(node, key, [item])
    reply = learnings.receive(node, public, raw, time.time())
    assert reply == {"type": "ack", "id": json.loads(raw)["packet"]["id"], "learnings": 1,
                     "kernels": [13]}  # fmt: skip
    assert learnings.receive(node, public, raw, time.time())["duplicate"] is True
    again = learnings.receive(node, public, learnings_message(node, key, [item]), time.time())
    assert again["learnings"] == 0  # a new packet, the same learning: kept once
    assert ReceivedLearning.objects.get().nodes == ["edge-a"]
    forged = json.loads(raw)
    forged["packet"]["items"][0]["completion"] = " In the cellar."
    refused = learnings.receive(node, public, json.dumps(forged), time.time())
    assert refused["reason"] in ("malformed", "bad signature")  # digest first, then signature
    wrong_kernel = make(57, "correction", "Q", " A", 0.9).as_dict()  # minimal holds 13, 99, 162
    refused = learnings.receive(
        node, public, learnings_message(node, key, [wrong_kernel]), time.time()
    )
    assert refused["reason"] == "kernel not held"
    other = packets.new_key()
    refused = learnings.receive(node, public, learnings_message(node, other, [item]), time.time())
    assert refused["reason"] == "bad signature"
    stale = learnings.signed(json.loads(raw)["packet"], key, time.time() - 3600)
    assert learnings.receive(node, public, stale, time.time())["reason"] == "stale"
    big = learnings.receive(node, public, "x" * (learnings.MAX_BYTES + 1), time.time())
    assert big["reason"] == "oversized"
    assert ReceivedLearning.objects.count() == 1


# ---- fetching over HTTP (the live server of this process: the database is shared) ------------
@pytest.fixture
def joined_edge(central: Path, live_server: Any) -> tuple[Node, Any]:
    """This database as central's (the node) and the edge's (its state and key) at once."""
    from federation import keys

    key = packets.new_key()
    node = Node.objects.create(name="edge-a", size="full", public_key=packets.public_text(key))
    node.joined_at = node.created_at
    node.save()
    keys.store("node", key)
    EdgeState.objects.update_or_create(pk=1, defaults={
        "node_uuid": str(node.uuid), "central_key": central_key(), "size": "full",
        "central_url": live_server.url})  # fmt: skip
    return node, key


@pytest.mark.django_db(transaction=True)
def test_a_download_resumes_where_it_stopped_and_is_checked(
    joined_edge: tuple[Node, Any], settings: Any
) -> None:
    row = bundles.publish_bundle([KERNEL], "admin")
    notice = bundles.notice(row)
    name = f"kernels/{KERNEL}/adapter.safetensors"
    whole = (bundles.bundle_path(1) / name).read_bytes()
    part = bundles.bundles_dir() / "incoming" / "1" / (name + ".part")
    part.parent.mkdir(parents=True)
    part.write_bytes(whole[: len(whole) // 2])  # a download cut in the middle
    directory, manifest = bundle_edge.fetch(notice)
    assert (directory / name).read_bytes() == whole and not part.exists()
    assert manifest["version"] == 1
    # Resumed, not restarted: a damaged first half stays, and the file's hash says so.
    (directory / name).unlink()
    part.write_bytes(b"\0" * (len(whole) // 2))
    with pytest.raises(bundle_edge.Refused, match="bad hash"):
        bundle_edge.fetch(notice)
    settings.FEDERATION_BUNDLE_MAX_BYTES = 1024
    with pytest.raises(bundle_edge.Refused, match="too big"):
        bundle_edge.fetch(notice)


@pytest.mark.django_db(transaction=True)
def test_bundle_files_need_a_joined_edges_signature(
    joined_edge: tuple[Node, Any], live_server: Any
) -> None:
    import httpx

    node, _ = joined_edge
    bundles.publish_bundle([KERNEL], "admin")
    path = "/api/v1/federation/bundles/1/manifest/"
    url = live_server.url + path
    assert httpx.get(url).status_code == 403
    good = bundle_edge.signed_headers(path)
    assert httpx.get(url, headers=good).status_code == 200
    other = bundle_edge.signed_headers("/api/v1/federation/bundles/2/manifest/")
    assert httpx.get(url, headers=other).json()["detail"] == "bad signature"  # another path
    ranged = bundle_edge.signed_headers(f"/api/v1/federation/bundles/1/files/{KERNEL_FILE}")
    reply = httpx.get(live_server.url + f"/api/v1/federation/bundles/1/files/{KERNEL_FILE}",
                      headers={**ranged, "Range": "bytes=10-"})  # fmt: skip
    assert reply.status_code == 206 and reply.headers["Content-Range"].startswith("bytes 10-")
    Node.objects.filter(pk=node.pk).update(revoked_at=node.created_at)
    assert httpx.get(url, headers=bundle_edge.signed_headers(path)).json()["detail"] == (
        "revoked node"
    )


KERNEL_FILE = f"kernels/{KERNEL}/adapter.json"
