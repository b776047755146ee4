"""`qig`: the product's console command.

    qig up [--host H] [--port P] [--ollama-port 11434]
                                    prepare the database and admin, start and supervise every
                                    process; with --ollama-port the web server also listens there
                                    (the same app; `/` answers "Ollama is running")
    qig serve [--host H] [--port 11434] [--size minimal|medium|full]
                                    the Ollama/OpenAI-compatible inference API alone: one web
                                    process, no dashboard, no workers (an edge node; --size sets
                                    QIG_FEDERATION_SIZE)
    qig init                        only prepare (migrate, create the admin account)
    qig federation add-node NAME [--size minimal|medium|full]
                                    (central) put a node on the allow-list; prints its one-time
                                    join token and the command the edge runs
    qig federation join URL TOKEN   (edge) join the central at URL with a join token
    qig federation revoke NAME      (central) revoke a node: its connection closes at once
    qig federation status           this node's role, identity, link or nodes (JSON)
    qig backup [DEST]               the database and the node's files into one .tar, while it runs
    qig restore SRC [--force]       verify a backup, restore it into this data dir, migrate
    qig snapshot export [DIR] | import DIR
                                    the high-value patterns as files (docs/snapshots.md)

`qig up` starts the web server (daphne, ASGI) and, in services mode (REDIS_URL set), separate
Celery workers for the `gpu` and `default` queues and Celery beat. It restarts a worker or beat that
dies, and on Ctrl-C / SIGTERM stops every process it started (SIGTERM, then SIGKILL after a grace
period) so none is left behind. Each child also gets SIGTERM if `qig` itself is killed.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from federation.flower.processes import children as flower_children
from qigcenter.env import ConfigError, env_host, env_int, is_loopback

GRACE_S = 15.0
MAX_BACKOFF_S = 30.0


def _die_with_parent() -> None:
    """Runs in each child before exec: deliver SIGTERM to it when `qig` dies, however it dies."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass  # not Linux: the normal shutdown path still stops the children


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str]
    essential: bool  # when an essential child exits, everything stops
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    next_start: float = 0.0
    started_at: float = field(default=0.0)

    def start(self) -> None:
        self.process = subprocess.Popen(
            self.argv, env=self.env, start_new_session=True, preexec_fn=_die_with_parent
        )
        self.started_at = time.monotonic()
        print(f"qig: started {self.name} (pid {self.process.pid})", flush=True)

    def signal_group(self, sig: signal.Signals) -> None:
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, sig)


class Supervisor:
    def __init__(self, children: list[Child], health_url: str) -> None:
        self.children = children
        self.health_url = health_url
        self.stopping = False

    def _on_signal(self, signum: int, frame: object) -> None:
        if self.stopping:  # a second Ctrl-C: don't wait for the grace period
            for child in self.children:
                child.signal_group(signal.SIGKILL)
        self.stopping = True

    def run(self) -> int:
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGTERM, self._on_signal)
        for child in self.children:
            child.start()
        announced = False
        exit_code = 0
        while not self.stopping:
            if not announced and _healthy(self.health_url):
                print(f"qig: ready — open {self.health_url.removesuffix('/healthz')}/", flush=True)
                announced = True
            for child in self.children:
                assert child.process is not None, "every child was started"
                code = child.process.poll()
                if code is None:
                    continue
                if child.essential:
                    print(f"qig: {child.name} exited with code {code}; stopping", flush=True)
                    exit_code = code or 1
                    self.stopping = True
                    break
                if child.next_start == 0.0:
                    backoff = min(MAX_BACKOFF_S, 2.0 ** min(child.restarts, 5))
                    if time.monotonic() - child.started_at > 60:
                        child.restarts, backoff = 0, 1.0
                    child.next_start = time.monotonic() + backoff
                    print(
                        f"qig: {child.name} exited with code {code}; restarting in {backoff:.0f}s",
                        flush=True,
                    )
                elif time.monotonic() >= child.next_start:
                    child.restarts += 1
                    child.next_start = 0.0
                    child.start()
            time.sleep(0.2)
        self.shutdown()
        return exit_code

    def shutdown(self) -> None:
        print("qig: stopping", flush=True)
        for child in self.children:
            child.signal_group(signal.SIGTERM)
        deadline = time.monotonic() + GRACE_S
        for child in self.children:
            if child.process is None:
                continue
            try:
                child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                print(f"qig: {child.name} did not stop in {GRACE_S:.0f}s; killing it", flush=True)
            # Kill the whole group: Celery's pool processes, anything a task spawned.
            child.signal_group(signal.SIGKILL)
            child.process.wait()
        print("qig: stopped", flush=True)


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def _port_free(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def prepare(verbosity: int = 1) -> None:
    """Migrate the database, make sure the admin account and the 240 kernels exist, and on a
    fresh install queue the bootstrap training jobs (all idempotent)."""
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", interactive=False, verbosity=verbosity)
    _ensure_admin()
    from constellation.services import ensure_kernels
    from learning.bootstrap import queue_bootstrap_jobs

    ensure_kernels()
    from constellation import activity

    activity.reset()  # no request of a previous web process is still being answered
    _prepare_federation()
    for job in queue_bootstrap_jobs():
        print(f"qig: queued bootstrap job {job.pk} ({job.kind})", flush=True)


def _prepare_federation() -> None:
    """Central: its signing key exists before an edge joins. Edge: join with QIG_CENTRAL_URL and
    QIG_JOIN_TOKEN when not joined yet (a failure is said; the client keeps trying)."""
    from django.conf import settings

    if settings.FEDERATION == "central":
        from federation import keys
        from federation.models import Node

        keys.central_key()
        Node.objects.update(online=False)  # a killed central's connections are gone
        print("qig: federation: central (edges join at /api/v1/federation/join/)", flush=True)
    elif settings.FEDERATION == "edge":
        from federation import edge

        try:
            state = edge.ensure_joined()
        except edge.JoinFailed as exc:
            print(f"qig: federation: could not join central: {exc}", flush=True)
            return
        if state is None:
            print(
                "qig: federation: edge, not joined yet: run `qig federation join URL TOKEN` "
                "or set QIG_CENTRAL_URL and QIG_JOIN_TOKEN",
                flush=True,
            )
        elif state.size and state.size != settings.FEDERATION_SIZE:
            print(
                f"qig: federation: warning: this edge joined as {state.size} but runs "
                f"QIG_FEDERATION_SIZE={settings.FEDERATION_SIZE}: central refuses packets for "
                f"kernels beyond {state.size}; start it with QIG_FEDERATION_SIZE={state.size}",
                flush=True,
            )
        else:
            print(
                f"qig: federation: edge {state.name} ({settings.FEDERATION_SIZE}) of "
                f"{state.central_url}",
                flush=True,
            )


def _ensure_admin() -> None:
    from django.conf import settings
    from django.contrib.auth import get_user_model

    User = get_user_model()
    username = settings.ADMIN_USERNAME
    password_file: Path = settings.DATA_DIR / "admin_password"
    from_env = os.environ.get("QIG_ADMIN_PASSWORD", "")
    user = User.objects.filter(username=username).first()
    if from_env:
        if user is None:
            User.objects.create_superuser(username=username, email="", password=from_env)
            print(f"qig: created admin account '{username}' (password from QIG_ADMIN_PASSWORD)")
        elif not user.check_password(from_env):
            user.set_password(from_env)
            user.save(update_fields=["password"])
            print(f"qig: admin '{username}' password set from QIG_ADMIN_PASSWORD")
        return
    if user is not None:
        where = f" (stored in {password_file})" if password_file.exists() else ""
        print(f"qig: admin account: {username}{where}")
        return
    password = secrets.token_urlsafe(12)
    tmp = password_file.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(password + "\n")
    os.replace(tmp, password_file)
    User.objects.create_superuser(username=username, email="", password=password)
    print(f"qig: created admin account '{username}' with password: {password}")
    print(f"qig: (kept in {password_file}; set QIG_ADMIN_PASSWORD to choose your own)")


def _endpoint(host: str, port: int) -> str:
    """A Twisted endpoint string for daphne's `-e` (colons of an IPv6 address escaped)."""
    return f"tcp:port={port}:interface={host.replace(':', chr(92) + ':')}"


def build_children(
    host: str,
    port: int,
    services: bool,
    data_dir: Path,
    ollama_port: int | None = None,
    api_only: bool = False,
) -> list[Child]:
    env = dict(os.environ, QIG_HOST=host, QIG_PORT=str(port), PYTHONUNBUFFERED="1")
    if ollama_port:
        env["QIG_OLLAMA_PORT"] = str(ollama_port)
    python = sys.executable
    web = [python, "-m", "daphne", "-b", host, "-p", str(port)]
    if ollama_port:
        web += ["-e", _endpoint(host, ollama_port)]
    web.append("qigcenter.asgi:application")
    # An edge's federation client: its own process, restarted like the workers when it dies.
    edge = (
        [Child("federation", [python, "-m", "federation.client"], env, essential=False)]
        if os.environ.get("QIG_FEDERATION", "").strip().lower() == "edge"
        else []
    )
    # QIG_FLOWER=1: Flower's SuperLink (central) or SuperNode (edge), supervised alike.
    edge += [Child(*spec, essential=False) for spec in flower_children(python, env)]
    if api_only:
        return [Child("web", web, dict(env, QIG_API_ONLY="1"), essential=True), *edge]
    if not services:
        return [Child("web", web, dict(env, QIG_START_EMBEDDED_WORKER="1"), essential=True), *edge]
    level = os.environ.get("QIG_LOG_LEVEL", "INFO").upper()
    # --quiet: no start-up banner (two dozen lines a process) unless the level is DEBUG.
    celery = [python, "-m", "celery", "-A", "qigcenter", *(["--quiet"] if level != "DEBUG" else [])]
    log = ["--loglevel", level]
    return [
        *edge,
        Child("web", web, env, essential=True),
        Child(
            "worker-gpu",
            [*celery, "worker", "-Q", "gpu", "-c", "1", "-n", "gpu@%h", *log],
            env,
            essential=False,
        ),
        Child(
            "worker-default",
            [*celery, "worker", "-Q", "default", "-c", "2", "-n", "default@%h", *log],
            env,
            essential=False,
        ),
        Child(
            "beat",
            [*celery, "beat", "--schedule", str(data_dir / "celerybeat-schedule"), *log],
            env,
            essential=False,
        ),
    ]


def cmd_up(args: argparse.Namespace, api_only: bool = False) -> int:
    host, port = args.host, args.port
    ollama_port = getattr(args, "ollama_port", None)
    os.environ["QIG_HOST"], os.environ["QIG_PORT"] = host, str(port)
    if not is_loopback(host) and not os.environ.get("QIG_API_KEY"):
        raise ConfigError(
            "QIG_API_KEY",
            "",
            "a key when binding beyond loopback (--host " + host + "): the "
            "Ollama-shaped API would otherwise be open to the network",
        )
    for wanted in (port, ollama_port):
        if wanted and not _port_free(host, wanted):
            print(
                f"qig: error: {host}:{wanted} is already in use (is another `qig up` running?)",
                file=sys.stderr,
            )
            return 2
    prepare(verbosity=0 if args.quiet else 1)
    from federation.snapshot_cli import at_start as import_snapshot

    import_snapshot()
    from django.conf import settings

    mode = "services (PostgreSQL/Redis, separate workers)" if settings.SERVICES_MODE else "embedded"
    if api_only:
        mode = "inference API only (no dashboard, no workers)"
    print(f"qig: mode: {mode}; data dir: {settings.DATA_DIR}", flush=True)
    if ollama_port:
        print(f"qig: Ollama-compatible listener on {host}:{ollama_port}", flush=True)
    children = build_children(
        host, port, settings.SERVICES_MODE, settings.DATA_DIR, ollama_port, api_only
    )
    url_host = f"[{host}]" if ":" in host else ("127.0.0.1" if host in ("0.0.0.0", "::") else host)
    return Supervisor(children, f"http://{url_host}:{port}/healthz").run()


def cmd_serve(args: argparse.Namespace) -> int:
    return cmd_up(args, api_only=True)


def cmd_init(args: argparse.Namespace) -> int:
    prepare()
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="qig", description="QIG Control Center")
    sub = p.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start the whole product (web, workers, beat)")
    up.add_argument("--host", default=None, help="address to bind (default $QIG_HOST or 127.0.0.1)")
    up.add_argument("--port", default=None, help="port (default $QIG_PORT or 9200)")
    up.add_argument("--quiet", action="store_true", help="less output while preparing")
    up.add_argument(
        "--ollama-port", type=int, default=None, help="also serve on this port (e.g. 11434)"
    )
    up.set_defaults(func=cmd_up)
    serve = sub.add_parser("serve", help="the Ollama/OpenAI-compatible API alone (no dashboard)")
    serve.add_argument("--host", default=None, help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", default=None, help="port (default 11434)")
    serve.add_argument("--quiet", action="store_true", help="less output while preparing")
    serve.set_defaults(func=cmd_serve)
    serve.add_argument(
        "--size",
        choices=["minimal", "medium", "full"],
        default=None,
        help="an edge's size (default $QIG_FEDERATION_SIZE or minimal)",
    )
    init = sub.add_parser("init", help="migrate the database and create the admin account")
    init.set_defaults(func=cmd_init)
    from federation.cli import add_parser as add_federation

    add_federation(sub)
    from qigcenter.backup import add_parser as add_backup

    add_backup(sub)
    from federation.snapshot_cli import add_parser as add_snapshot

    add_snapshot(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "qigcenter.settings")
    args = parser().parse_args(argv)
    try:
        if args.command in ("up", "serve"):
            environ = dict(os.environ)
            if args.host is not None:
                environ["QIG_HOST"] = args.host
            if args.port is not None:
                environ["QIG_PORT"] = str(args.port)
            elif args.command == "serve":
                environ["QIG_PORT"] = "11434"
            if getattr(args, "size", None):
                os.environ["QIG_FEDERATION_SIZE"] = args.size
            args.host = env_host("QIG_HOST", "127.0.0.1", environ)
            args.port = env_int("QIG_PORT", 9200, minimum=1, maximum=65535, environ=environ)
        return int(args.func(args))
    except ConfigError as exc:
        print(f"qig: configuration error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
