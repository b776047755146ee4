"""An edge's SuperNode (docs/flower.md): `python -m federation.flower.node`, supervised by
`qig up` / `qig serve` on an edge with QIG_FLOWER=1.

It makes the SuperNode's key pair when there is none (`<data dir>/federation/flower/`), has
central register its public key (`federation.flower.enrol`, signed with the edge's node key),
keeps central's CA certificate, then becomes Flower's own `flower-supernode` (exec: same process
id, so the supervisor's restart with backoff and its stop reach Flower directly). It exits
non-zero when the edge has not joined yet or central cannot be reached; `qig up` tries again.
"""

from __future__ import annotations

import os
import sys
from urllib.parse import urlsplit

import httpx
from django.conf import settings

from federation.flower import enrol, pki
from federation.flower.setup import django_setup


def superlink_address(central_url: str) -> str:
    """QIG_FLOWER_SUPERLINK, else central's host with QIG_FLOWER_PORT."""
    if settings.FLOWER_SUPERLINK:
        return str(settings.FLOWER_SUPERLINK)
    host = urlsplit(central_url).hostname or "127.0.0.1"
    host = f"[{host}]" if ":" in host else host
    return f"{host}:{settings.FLOWER_PORT}"


def register(timeout: float = 60.0) -> tuple[list[str], dict[str, str]]:
    """Register this edge's SuperNode key with central; the `flower-supernode` command line and
    its environment. SystemExit with the reason when it cannot."""
    from federation import edge, keys
    from federation.flower import link

    state = edge.joined()
    node_key = keys.node_key()
    if state is None or node_key is None:
        raise SystemExit("qig: flower: this edge has not joined central yet (qig federation join)")
    home = pki.flower_dir(settings.DATA_DIR)
    private, public = pki.supernode_key(home)
    body = enrol.request(state.node_uuid, public, node_key)
    url = state.central_url.rstrip("/") + enrol.ENDPOINT
    try:
        answer = httpx.post(url, json=body, timeout=timeout)
    except httpx.HTTPError as exc:
        raise SystemExit(f"qig: flower: could not reach central at {url}: {exc}") from None
    if answer.status_code != 200:
        try:
            said = answer.json().get("detail", answer.text)
        except ValueError:
            said = answer.text[:300]
        raise SystemExit(
            f"qig: flower: central refused the SuperNode key ({answer.status_code}): {said}"
        )
    try:
        reply = enrol.read_reply(answer.json(), state.node_uuid, state.central_key)
    except ValueError as exc:
        raise SystemExit(f"qig: flower: {exc}") from None
    ca = home / "superlink-ca.pem"
    if not ca.is_file() or ca.read_text(encoding="ascii") != reply["ca"]:
        pki.write_atomic(ca, str(reply["ca"]).encode("ascii"))
    address = superlink_address(state.central_url)
    print(f"qig: flower: SuperNode {reply['flower_node_id']} of {address}", flush=True)
    argv = [
        str(link.bin_dir() / "flower-supernode"),
        "--superlink", address,
        "--root-certificates", str(ca),
        "--auth-supernode-private-key", str(private),
        "--host", "127.0.0.1",
        "--port", str(settings.FLOWER_NODE_PORT),
    ]  # fmt: skip
    return argv, link.child_env(flwr_home=home / "supernode")


def main() -> None:
    django_setup()
    if settings.FEDERATION != "edge":
        sys.exit("federation.flower.node: only an edge runs a SuperNode (QIG_FEDERATION=edge)")
    argv, env = register()
    sys.stdout.flush()
    os.execve(argv[0], argv, env)


if __name__ == "__main__":
    main()
