"""Update bundles on an edge (docs/federation.md, "Update bundles"): fetch one central announced,
verify it, apply it live, keep the one before for rollback, and say which one runs.

Fetching is plain HTTP from central (`federation.bundle_api`), each request signed with the edge's
key; files land in `<data dir>/federation/bundles/incoming/<version>/` and a broken download
resumes where it stopped (`Range`). Nothing is applied unless every check passes, in this order:
the manifest's size and sha256 (as the notice said), central's signature, its format and version,
the trunk's fingerprint (an adapter fits only the trunk it was trained on), every path, the
total size (`QIG_FEDERATION_BUNDLE_MAX_BYTES`), and each file's size and sha256. A refused bundle
is recorded with its reason, reported to central, and not fetched again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
import time
from pathlib import Path
from typing import Any

import httpx
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from constellation import published
from constellation.engine import checkpoint
from constellation.engine.trainer import AnchorUpdate
from constellation.models import Kernel
from constellation.published import file_sha256
from federation import keys, packets
from federation.bundle_models import Bundle, BundleStatus
from federation.bundles import FORMAT, MANIFEST, bundle_path, bundles_dir
from federation.models import EdgeState

log = logging.getLogger(__name__)

MAX_MANIFEST_BYTES = 1 << 20
SAFE_PATH = re.compile(
    r"^(kernels/(\d|[1-9]\d|1\d\d|2[0-3]\d)/(adapter\.safetensors|adapter\.json|kernel\.json)"
    r"|anchors\.json|vocabulary\.json)$"
)
ATTEMPTS = 5


class Refused(ValueError):
    """This bundle is not applied; the message says why."""


def signed_headers(path: str) -> dict[str, str]:
    """Headers proving the request comes from this edge (central checks them: bundle_api)."""
    state = EdgeState.get()
    key = keys.node_key()
    if key is None or not state.node_uuid:
        raise Refused("this edge has not joined a central")
    ts = round(time.time(), 3)
    sig = packets.sign({"node": state.node_uuid, "ts": ts, "path": path}, key, "fetch")["sig"]
    return {"X-QIG-Node": state.node_uuid, "X-QIG-Time": f"{ts:.3f}", "X-QIG-Signature": sig}


def _get(client: httpx.Client, path: str, **headers: str) -> httpx.Response:
    return client.get(path, headers={**signed_headers(path), **headers})


# ---- fetching and verifying -------------------------------------------------------------------
def fetch(
    notice: dict[str, Any], client: httpx.Client | None = None
) -> tuple[Path, dict[str, Any]]:
    """Download the announced bundle and verify it; returns its directory and manifest."""
    version = notice.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise Refused(f"the notice names no bundle version ({version!r})")
    state = EdgeState.get()
    own = client or httpx.Client(base_url=state.central_url, timeout=60.0)
    try:
        base = f"/api/v1/federation/bundles/{version}"
        reply = _get(own, f"{base}/manifest/")
        if reply.status_code != 200:
            raise ConnectionError(f"central answered {reply.status_code} for the manifest")
        raw = reply.content
        manifest = verify_manifest(raw, version, notice.get("manifest_sha256"), state.central_key)
        incoming = bundles_dir() / "incoming" / str(version)
        incoming.mkdir(parents=True, exist_ok=True)
        for name, spec in manifest["files"].items():
            _download(own, f"{base}/files/{name}", incoming / name, spec)
        (incoming / MANIFEST).write_bytes(raw)
        return incoming, manifest
    finally:
        if client is None:
            own.close()


def verify_manifest(
    raw: bytes, version: int, expected_sha: Any, central_key: str
) -> dict[str, Any]:
    if len(raw) > MAX_MANIFEST_BYTES:
        raise Refused(f"the manifest is {len(raw)} bytes, over {MAX_MANIFEST_BYTES}")
    if isinstance(expected_sha, str) and hashlib.sha256(raw).hexdigest() != expected_sha:
        raise Refused("bad hash: the manifest is not the one central announced")
    try:
        manifest = json.loads(raw)
        packets.verify(manifest, packets.load_public(central_key), "bundle")
    except packets.Rejected as exc:
        raise Refused(f"bad signature: {exc.detail}") from None
    except (ValueError, TypeError) as exc:
        raise Refused(f"the manifest is not valid JSON: {exc}") from None
    if manifest.get("format") != FORMAT or manifest.get("version") != version:
        raise Refused(f"format {manifest.get('format')!r} / version {manifest.get('version')!r}")
    ours = published.trunk_fingerprint()
    if manifest.get("trunk") != ours:
        raise Refused(
            f"another trunk: the bundle fits {manifest.get('trunk')}, this edge runs {ours}"
        )
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        raise Refused("the manifest lists no files")
    total = 0
    for name, spec in files.items():
        if not isinstance(name, str) or not SAFE_PATH.match(name):
            raise Refused(f"a file path the edge does not accept: {name!r}")
        size = spec.get("bytes") if isinstance(spec, dict) else None
        sha = spec.get("sha256") if isinstance(spec, dict) else None
        if not isinstance(size, int) or size < 0 or not isinstance(sha, str) or len(sha) != 64:
            raise Refused(f"{name}: no valid size and sha256")
        total += size
    if total > settings.FEDERATION_BUNDLE_MAX_BYTES:
        raise Refused(
            f"too big: {total} bytes, QIG_FEDERATION_BUNDLE_MAX_BYTES is "
            f"{settings.FEDERATION_BUNDLE_MAX_BYTES}"
        )
    return manifest


def _download(client: httpx.Client, path: str, target: Path, spec: dict[str, Any]) -> None:
    """One file, resumed from what a broken try left (`<name>.part`), checked against `spec`."""
    done = target.is_file() and target.stat().st_size == spec["bytes"]
    if done and file_sha256(target) == spec["sha256"]:
        return
    part = target.with_name(target.name + ".part")
    target.parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(ATTEMPTS):
        have = part.stat().st_size if part.is_file() else 0
        if have > spec["bytes"]:
            part.unlink()
            have = 0
        try:
            headers = {"Range": f"bytes={have}-"} if have else {}
            with client.stream("GET", path, headers={**signed_headers(path), **headers}) as r:
                if r.status_code == 200:
                    have = 0  # the whole file (no range asked, or none served): from the start
                elif r.status_code != 206 or not have:
                    raise ConnectionError(f"central answered {r.status_code} for {path}")
                with part.open("ab" if have else "wb") as out:
                    for block in r.iter_bytes(1 << 16):
                        have += len(block)
                        if have > spec["bytes"]:
                            raise Refused(f"{target.name}: more bytes than the manifest says")
                        out.write(block)
            break
        except (httpx.HTTPError, ConnectionError) as exc:
            if attempt == ATTEMPTS - 1:
                raise ConnectionError(f"{path}: {exc}") from exc
            time.sleep(min(2.0**attempt, 10.0))
    if part.stat().st_size != spec["bytes"] or file_sha256(part) != spec["sha256"]:
        part.unlink(missing_ok=True)
        raise Refused(f"bad hash: {target.name} does not match the manifest")
    part.replace(target)


# ---- applying -----------------------------------------------------------------------------------
def apply(directory: Path, manifest: dict[str, Any]) -> list[int]:
    """Swap the bundle's kernels this edge holds in, live: each becomes its kernel's served
    version (with its routing radius and anchor), the inference server reloads on its next
    request. Returns the kernels applied."""
    from constellation import kernels as kernel_states
    from federation import edge

    held = edge.held()
    anchors = json.loads((directory / "anchors.json").read_text())
    applied = []
    # One transaction: every kernel's new version is written first, and the links all swap when
    # it commits (`kernel_trained` serves on commit), back to back: the inference server
    # reloads once, not once per kernel, and a failure serves none of them.
    with transaction.atomic():
        for k in sorted(int(k) for k in manifest["kernels"]):
            folder = directory / "kernels" / str(k)
            if k not in held or not (folder / "adapter.safetensors").is_file():
                continue
            adapter, cfg = checkpoint.load_adapter(folder)
            meta = published.version_meta(folder) or {}
            row = Kernel.objects.filter(index=k).values_list("anchor", flat=True).first()
            before = list(row or [])
            after = [float(v) for v in (anchors.get(str(k)) or meta.get("anchor") or before)]
            update = AnchorUpdate(kernel=k, before=before, after=after, distance=0.0, delta=[])
            meta = {**meta, "bundle": manifest["version"]}
            kernel_states.kernel_trained(k, adapter, cfg, update, job=None, phi=None, meta=meta)
            applied.append(k)
    vocabulary = directory / "vocabulary.json"
    if vocabulary.is_file():
        _add_words([str(w) for w in json.loads(vocabulary.read_text()).get("words", [])])
    return applied


def _add_words(words: list[str]) -> list[str]:
    """Central's vocabulary additions this edge lacks, added in central's order (so the same
    trunk grows the same new ids when the edge added none of its own)."""
    from learning.vocabulary import InvalidWords, expand_vocabulary

    coordizer = published.load_coordizer()
    missing = [w for w in words if len(coordizer.encode(" " + w)) != 1]
    if not missing:
        return []
    try:
        ranked = {w: len(missing) - i for i, w in enumerate(missing)}
        report = expand_vocabulary(ranked, len(missing))
    except InvalidWords as exc:  # signed by central, so not expected: said, adapters kept
        log.warning("federation: the bundle's vocabulary was not added: %s", exc)
        return []
    return [str(a["word"]) for a in report["added"]]


def receive(notice: dict[str, Any]) -> bool:
    """The client heard of a bundle: fetch, verify and apply it unless it runs it already or
    refused it before. True when something changed (`report` says what to tell central)."""
    version = notice.get("version")
    state = EdgeState.get()
    if not isinstance(version, int) or version <= state.bundle_version:
        return False
    if Bundle.objects.filter(version=version, status=BundleStatus.REFUSED).exists():
        return False
    try:
        directory, manifest = fetch(notice)
        began = time.perf_counter()  # the download is done: from here, verify and swap
        install(directory, manifest, began)
        return True
    except Refused as exc:
        shutil.rmtree(bundles_dir() / "incoming" / str(version), ignore_errors=True)
        Bundle.objects.update_or_create(
            version=version,
            defaults={"status": BundleStatus.REFUSED, "reason": str(exc)[:300],
                      "source": "central", "kernels": notice.get("kernels") or []},
        )  # fmt: skip
        log.warning("federation: bundle %s refused: %s", version, exc)
        return True


def install(directory: Path, manifest: dict[str, Any], began: float) -> dict[str, Any]:
    version = int(manifest["version"])
    kernels = apply(directory, manifest)
    final = bundle_path(version)
    if directory != final:
        final.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(final, ignore_errors=True)
        directory.replace(final)
    elapsed = (time.perf_counter() - began) * 1000
    with transaction.atomic():
        Bundle.objects.filter(status=BundleStatus.APPLIED).exclude(version=version).update(
            status=BundleStatus.REPLACED
        )
        Bundle.objects.update_or_create(
            version=version,
            defaults={"status": BundleStatus.APPLIED, "reason": "", "kernels": kernels,
                      "source": str(manifest.get("source", "central")), "manifest": manifest,
                      "bytes": sum(f["bytes"] for f in manifest["files"].values()),
                      "applied_at": timezone.now(), "apply_ms": round(elapsed, 1)},
        )  # fmt: skip
        EdgeState.objects.filter(pk=1).update(bundle_version=version)
    _keep_two()
    log.info("federation: bundle %s applied (kernels %s, %.0f ms)", version, kernels, elapsed)
    return {"type": "bundle_status", "version": version, "status": "applied", "reason": ""}


def warm_up() -> None:
    """Ask this node's own server to load what is now published (Ollama's empty-prompt load),
    so the first person to ask after a bundle does not wait for the reload. Best effort."""
    import os

    host = os.environ.get("QIG_HOST", "127.0.0.1")
    host = "127.0.0.1" if host in ("", "0.0.0.0", "::") else host  # a bind-all address: loopback
    port = os.environ.get("QIG_PORT", "9200")
    key = settings.API_KEY
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    url = f"http://{host if ':' not in host else f'[{host}]'}:{port}/api/generate"
    try:
        httpx.post(url, json={"model": "qig-constellation", "prompt": ""}, headers=headers,
                   timeout=120)  # fmt: skip
    except httpx.HTTPError as exc:
        log.info("federation: the bundle's warm-up request failed: %s", exc)


def _keep_two() -> None:
    """The bundle it runs and the one before (for rollback); older directories go."""
    keep = set(
        Bundle.objects.filter(status__in=[BundleStatus.APPLIED, BundleStatus.REPLACED])
        .order_by("-applied_at")
        .values_list("version", flat=True)[:2]
    )
    for path in bundles_dir().iterdir() if bundles_dir().is_dir() else []:
        if path.name.isdigit() and int(path.name) not in keep:
            shutil.rmtree(path, ignore_errors=True)


def rollback() -> dict[str, Any]:
    """Run the bundle before the current one again (verified again from its kept files)."""
    state = EdgeState.get()
    previous = (
        Bundle.objects.filter(status=BundleStatus.REPLACED)
        .exclude(version=state.bundle_version)
        .order_by("-applied_at")
        .first()
    )
    if previous is None or previous.version is None or not bundle_path(previous.version).is_dir():
        raise Refused("there is no earlier bundle on this edge to roll back to")
    directory = bundle_path(previous.version)
    raw = (directory / MANIFEST).read_bytes()
    manifest = verify_manifest(raw, previous.version, None, state.central_key)
    for name, spec in manifest["files"].items():
        if file_sha256(directory / name) != spec["sha256"]:
            raise Refused(f"bad hash: the kept {name} of bundle {previous.version} changed")
    return install(directory, manifest, time.perf_counter())


def report() -> dict[str, Any]:
    """What the edge says it runs (sent with its heartbeat when it changed)."""
    state = EdgeState.get()
    last = Bundle.objects.order_by("-created_at", "-id").first()
    refused = last is not None and last.status == BundleStatus.REFUSED
    return {
        "type": "bundle_status",
        "version": state.bundle_version,
        "status": "refused" if refused else "applied",
        "reason": last.reason if refused and last is not None else "",
        "refused_version": last.version if refused and last is not None else None,
    }
