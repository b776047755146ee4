"""Central's side of Flower (docs/flower.md): the SuperLink process and the `flwr` CLI calls that
drive it.

`python -m federation.flower.link` is Flower's own SuperLink (`flower-superlink`'s entry point,
run in this process) with TLS (central's CA, `federation.flower.pki`), SuperNode authentication,
a persistent state database and no runtime dependency installation; `qig up` supervises it when
QIG_FLOWER=1 on central. Flower 1.42 serves its Fleet, Control and Runtime APIs on one HTTPS
port, and its open-source Control API has no account authentication: whoever reaches it could
register a SuperNode key or start a run (code that central and the edges execute). So one
middleware is added through Flower's extension hook: `/v1/control/*` and `/v1/runtime/*` answer
only connections from this machine; edges reach the Fleet API alone.

The rest of central (the API, rounds) talks to the SuperLink with Flower's CLI, `flwr`, over its
Control API on loopback, configured by a `config.toml` in FLWR_HOME (`cli/`).
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings

from federation.flower import pki

CONNECTION = "qig"
APP_NAME = "qig-flower"
CLI_TIMEOUT_S = 120.0
APP_PYPROJECT = """\
# Written by federation/flower/link.py: the Flower App `flwr run` bundles. Its components are
# modules of the installed product (the same on central and on every edge).
[project]
name = "{name}"
version = "1.0.0"
description = "QIG federated adapter averaging (FFA-LoRA), docs/flower.md"
license = "MIT"
dependencies = ["flwr>=1.42.0"]

[tool.flwr.app]
publisher = "qig"

[tool.flwr.app.components]
serverapp = "federation.flower.server_app:app"
clientapp = "federation.flower.client_app:app"

[tool.flwr.app.config]
round-id = 0
"""


class FlowerError(RuntimeError):
    """A `flwr` command failed; the message says why (Flower's own words)."""


def home() -> Path:
    return pki.flower_dir(settings.DATA_DIR)


def bin_dir() -> Path:
    """Where Flower's commands are: beside this Python (the product's environment)."""
    return Path(sys.executable).parent


def child_env(base: dict[str, str] | None = None, flwr_home: Path | None = None) -> dict[str, str]:
    """An environment for Flower's processes: Flower's commands on PATH (the SuperLink and the
    SuperNode start `flower-superexec`, which starts the apps), this product's settings (the
    apps set Django up), FLWR_HOME, and neither Flower's telemetry nor its update check."""
    env = dict(os.environ if base is None else base)
    env["PATH"] = os.pathsep.join([str(bin_dir()), env.get("PATH", "")])
    env.setdefault("DJANGO_SETTINGS_MODULE", "qigcenter.settings")
    env.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    env.setdefault("FLWR_DISABLE_UPDATE_CHECK", "1")
    env["PYTHONUNBUFFERED"] = "1"
    if flwr_home is not None:
        flwr_home.mkdir(parents=True, exist_ok=True)
        env["FLWR_HOME"] = str(flwr_home)
    return env


def control_address() -> str:
    """The SuperLink as this machine reaches it (its Control API answers loopback only)."""
    host, port = settings.FLOWER_HOST, settings.FLOWER_PORT
    if host in ("0.0.0.0", "localhost") or _loopback(host):
        return f"127.0.0.1:{port}"
    if host == "::":
        return f"[::1]:{port}"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def tls_paths() -> dict[str, Path]:
    public = urlsplit(settings.FEDERATION_PUBLIC_URL or "").hostname
    names = pki.tls_names(settings.FLOWER_HOST, settings.FLOWER_TLS_NAMES, public)
    return pki.ensure_tls(home(), names)


def ca_pem() -> str:
    return tls_paths()["ca"].read_text(encoding="ascii")


# ---- the `flwr` CLI ---------------------------------------------------------------------------
def cli_home() -> Path:
    """FLWR_HOME of central's `flwr` calls: one SuperLink connection, `qig`, to the local one."""
    directory = home() / "cli"
    text = (
        f'[superlink]\ndefault = "{CONNECTION}"\n\n[superlink.{CONNECTION}]\n'
        f'address = "{control_address()}"\nroot-certificates = "{tls_paths()["ca"]}"\n'
    )
    path = directory / "config.toml"
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        pki.write_atomic(path, text.encode("utf-8"))
    return directory


def flwr(*args: str, timeout: float = CLI_TIMEOUT_S) -> dict[str, Any]:
    """Run `flwr ARGS --format json` against the local SuperLink; its JSON answer, or
    FlowerError with what Flower said."""
    command = [str(bin_dir() / "flwr"), *args, "--format", "json"]
    try:
        done = subprocess.run(
            command,
            env=child_env(flwr_home=cli_home()),
            capture_output=True,
            timeout=timeout,
            check=False,
            cwd=home(),
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise FlowerError(f"flwr {args[0]}: {exc}") from None
    out = done.stdout.decode("utf-8", "replace").strip()
    try:
        answer = json.loads(out[out.index("{") :]) if "{" in out else {}
    except ValueError:
        answer = {}
    if done.returncode != 0 or not answer.get("success", False):
        said = answer.get("error-message") or answer.get("error") or out or done.stderr.decode()
        raise FlowerError(f"flwr {args[0]} {args[1] if len(args) > 1 else ''}: {str(said)[-500:]}")
    return dict(answer)


def nodes() -> dict[str, str]:
    """The SuperNodes the SuperLink knows: Flower node id → status."""
    answer = flwr("supernode", "ls", CONNECTION)
    rows = answer.get("nodes", [])
    return {str(row["node-id"]): str(row["status"]) for row in rows if "node-id" in row}


def register(public_key_line: str) -> str:
    """Register a SuperNode's public key (`flwr supernode register`); its Flower node id."""
    with_key = home() / "cli" / f"register-{uuid.uuid4().hex}.pub"  # (one per request)
    pki.write_atomic(with_key, public_key_line.encode("ascii") + b"\n")
    try:
        answer = flwr("supernode", "register", str(with_key), CONNECTION)
    finally:
        with_key.unlink(missing_ok=True)
    return str(answer["node-id"])


def unregister(node_id: str) -> None:
    flwr("supernode", "unregister", str(int(node_id)), CONNECTION)


def app_dir() -> Path:
    """The Flower App `flwr run` bundles (its pyproject.toml alone, written here)."""
    directory = home() / "app"
    text = APP_PYPROJECT.format(name=APP_NAME)
    path = directory / "pyproject.toml"
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        pki.write_atomic(path, text.encode("utf-8"))
    return directory


def start_run(round_id: int) -> str:
    """`flwr run` the app for round `round_id`; Flower's run id."""
    answer = flwr("run", str(app_dir()), CONNECTION, "--run-config", f"round-id={int(round_id)}")
    return str(answer["run-id"])


# ---- the SuperLink process ------------------------------------------------------------------
def superlink_argv() -> list[str]:
    tls = tls_paths()
    return [
        "flower-superlink",
        "--ssl-ca-certfile", str(tls["ca"]),
        "--ssl-certfile", str(tls["cert"]),
        "--ssl-keyfile", str(tls["key"]),
        "--enable-supernode-auth",
        "--disable-runtime-dependency-installation",
        "--database", str(home() / "superlink.db"),
        "--host", settings.FLOWER_HOST,
        "--port", str(settings.FLOWER_PORT),
    ]  # fmt: skip


def local_only_middleware() -> Any:
    """Starlette middleware: `/v1/control/` and `/v1/runtime/` only for this machine's own
    connections (from loopback, or to and from the address the SuperLink is bound to)."""
    from starlette.middleware import Middleware
    from starlette.types import ASGIApp, Receive, Scope, Send

    class LocalControlOnly:
        def __init__(self, app: ASGIApp) -> None:
            self.app = app

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            path = str(scope.get("path", ""))
            if scope["type"] == "http" and path.startswith(("/v1/control", "/v1/runtime")):
                client = (scope.get("client") or ("", 0))[0]
                server = (scope.get("server") or ("", 0))[0]
                if not (_loopback(client) or (client and client == server)):
                    body = b'{"detail": "the Control and Runtime APIs answer this machine only"}'
                    await send({"type": "http.response.start", "status": 403,
                                "headers": [(b"content-type", b"application/json")]})  # fmt: skip
                    await send({"type": "http.response.body", "body": body})
                    return
            await self.app(scope, receive, send)

    return Middleware(LocalControlOnly)


def main() -> None:
    """Run Flower's SuperLink for this central (blocks until it stops)."""
    from federation.flower.setup import django_setup

    django_setup()
    if settings.FEDERATION != "central":
        sys.exit("federation.flower.link: only a central runs the SuperLink (QIG_FEDERATION)")
    from federation.flower.models import ACTIVE, FlowerRound, fail

    for stale in FlowerRound.objects.filter(status__in=ACTIVE).values_list("pk", flat=True):
        fail(stale, "central's SuperLink (re)started: the round's ServerApp is gone")
    os.environ.update(child_env(flwr_home=home() / "superlink"))
    argv = superlink_argv()
    print(f"qig: flower: SuperLink on {settings.FLOWER_HOST}:{settings.FLOWER_PORT}", flush=True)
    from flwr.superlink import extensions
    from flwr.superlink.cli.flower_superlink import flower_superlink

    ours = local_only_middleware()
    extensions.get_middleware = lambda: (ours,)  # (Flower's hook; no other extension here)
    sys.argv = argv
    flower_superlink()


if __name__ == "__main__":
    main()
