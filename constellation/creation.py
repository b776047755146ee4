"""`/api/create`'s work: check all a request asks, then make it. A model config is a Modelfile
(`catalog.prepare`, `catalog.save`); with `adapters` (Ollama's JSON form: `{file name: blob
digest}`, the blob uploaded first with `POST /api/blobs/<digest>`) it is also a kernel's new
adapter version.

The kernel is the one the `from` model pins: a `qig-kernel-<n>-<role>` name, or a config pinned
to one (`ADAPTER`). The adapter must be one safetensors file in the engine's layout, shaped for
this node's trunk (`engine.checkpoint.adapter_from_file` says what does not fit). It is offered to
the kernel and goes live only through the promotion gate an adapter job's version passes: the
learning app judges it (`constellation.services.adapter_offered`, connected in
`LearningConfig.ready`; the constellation imports no app above it). The config is written in the
transaction that publishes the version: a refused adapter leaves neither behind.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

from constellation import blobs, catalog, published
from constellation.engine import Adapter, TrunkConfig, adapter_from_file
from constellation.errors import BadRequest, Unavailable
from constellation.modelfile import Modelfile
from constellation.services import adapter_offered


@dataclass(frozen=True)
class Offer:
    """An adapter a client brought for a kernel, read and checked against the trunk."""

    kernel: int
    adapter: Adapter
    trunk: TrunkConfig  # the trunk it was checked against
    source: dict[str, str]  # {"file", "digest", "model"}: where it came from (kernel.json keeps it)


@dataclass(frozen=True)
class Verdict:
    """The promotion gate's answer: `figures` are the held-out losses it decided on."""

    promoted: bool
    reason: str
    figures: dict[str, Any] = field(default_factory=dict)
    version: str = ""  # the version directory it was published as


class AdapterRefused(BadRequest):
    """The promotion gate did not promote the adapter (400, with its figures)."""

    def __init__(self, kernel: int, verdict: Verdict) -> None:
        super().__init__(f"kernel {kernel}'s promotion gate refused the adapter: {verdict.reason}")
        self.figures = verdict.figures


@dataclass
class Creation:
    """A checked `/api/create` request: nothing is written until `make`."""

    name: str
    modelfile: Modelfile
    offer: Offer | None = None

    def make(self) -> Verdict | None:
        """Write the config; with an adapter, only once the gate promoted it (`AdapterRefused`
        otherwise). Returns the gate's verdict (None: no adapter)."""
        if self.offer is None:
            catalog.save(self.name, self.modelfile)
            return None
        answers = adapter_offered.send(
            sender=Offer, offer=self.offer, then=lambda: catalog.save(self.name, self.modelfile)
        )
        if not answers:
            raise BadRequest("adapters: this node has no learning app to judge them")
        verdict = cast(Verdict, answers[0][1])
        if not verdict.promoted:
            raise AdapterRefused(self.offer.kernel, verdict)
        return verdict


def plan(body: dict[str, Any]) -> Creation:
    """Check a `/api/create` body (the Modelfile or the JSON form, and its adapters' blobs):
    `BadRequest` (400) for what is invalid, `ModelNotFound` (404) for a missing base."""
    fields = {k: body.get(k) for k in ("from", "parameters", "system", "template")}
    fields.update({k: body.get(k) for k in ("messages", "license")})
    name, mf = catalog.prepare(
        body.get("model") or body.get("name"), body.get("modelfile"), **fields
    )
    if body.get("files"):
        raise BadRequest(
            "files: this node does not import model weights (its trunk is trained here); "
            "name a model it serves in from, and bring a LoRA in adapters"
        )
    mf.quantization = catalog.quantize_level(body.get("quantize"))
    if not body.get("adapters"):
        return Creation(name, mf)
    offer = read_offer(name, mf, body["adapters"])
    mf.adapter_kernel = offer.kernel  # the model is pinned to the kernel it changed
    return Creation(name, mf, offer)


ONE_FILE = (
    "adapters: one safetensors file, {file name: blob digest} (the engine's LoRA layout: "
    "a.<layer>_<target>, b.<layer>_<target>)"
)


def read_offer(name: str, mf: Modelfile, adapters: Any) -> Offer:
    """The adapter of `adapters`, read from its blob and checked against this node's trunk,
    for the kernel `mf` pins."""
    if not isinstance(adapters, dict) or len(adapters) != 1:
        raise BadRequest(f"invalid value for field 'adapters': {ONE_FILE}")
    ((file, raw),) = adapters.items()
    digest = blobs.parse_digest(raw)
    if not blobs.has_blob(digest):
        raise BadRequest(
            f"adapter {file!r}: blob {digest} not found: upload it first with "
            f"POST /api/blobs/{digest}"
        )
    kernel = mf.adapter_kernel if mf.adapter_kernel is not None else catalog.resolve(mf.base).kernel
    if kernel is None:
        raise BadRequest(
            f"adapters: from {mf.base!r} is not a kernel's model; name one "
            "(qig-kernel-<n>-<role>, or a config with ADAPTER): the adapter becomes its version"
        )
    trunk = published.trunk_config()
    if trunk is None or not published.has_coordizer():
        raise Unavailable(f"no trained model yet: {published.bootstrap_progress()}")
    try:
        adapter = adapter_from_file(blobs.blob_path(digest), trunk)
    except ValueError as exc:
        raise BadRequest(f"adapter {file!r} ({digest}): {exc}") from None
    return Offer(kernel, adapter, trunk, {"file": file, "digest": digest, "model": name})
