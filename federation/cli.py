"""`qig federation …`: enrol, join, revoke, status (docs/federation.md). Registered by
qigcenter/cli.py's parser."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any


def cmd_federation(args: argparse.Namespace) -> int:
    import json

    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=0)
    from federation import central, edge
    from federation.models import Node
    from federation.status import history

    if args.action == "status":
        print(json.dumps(history(), indent=2, default=str))
        return 0
    if args.action == "join":
        if settings.FEDERATION != "edge":
            print("qig: error: set QIG_FEDERATION=edge on this node first", file=sys.stderr)
            return 2
        try:
            state = edge.join(args.url, args.token)
        except edge.JoinFailed as exc:
            print(f"qig: error: {exc}", file=sys.stderr)
            return 1
        print(
            f"qig: joined {state.central_url} as {state.name} ({state.size}), id {state.node_uuid}"
        )
        return 0
    if settings.FEDERATION != "central":
        print("qig: error: this is not a central node (QIG_FEDERATION=central)", file=sys.stderr)
        return 2
    if args.action == "add-node":
        from federation.api import NodeSerializer

        serializer = NodeSerializer(data={"name": args.name, "size": args.size})
        if not serializer.is_valid():
            print(f"qig: error: {json.dumps(serializer.errors)}", file=sys.stderr)
            return 2
        node = serializer.save()
        token = central.issue_token(node)
        url = settings.FEDERATION_PUBLIC_URL or (
            f"http://{os.environ.get('QIG_HOST', '127.0.0.1')}:{os.environ.get('QIG_PORT', '9200')}"
        )
        print(f"qig: node {node.name} ({node.size}) added; its join token (shown once, valid "
              f"until {node.join_expires_at:%Y-%m-%d %H:%M} UTC):")  # fmt: skip
        print(token)
        print(f"on the edge: QIG_FEDERATION=edge qig federation join {url} {token}")
        return 0
    if args.action == "revoke":
        node = Node.objects.filter(name=args.name).first()
        if node is None:
            print(f"qig: error: no node named {args.name!r}", file=sys.stderr)
            return 2
        central.revoke(node)
        print(f"qig: node {node.name} revoked")
        return 0
    return 2


def add_parser(sub: Any) -> None:
    federation = sub.add_parser("federation", help="enrol, join and revoke federation nodes")
    actions = federation.add_subparsers(dest="action", required=True)
    add = actions.add_parser("add-node", help="(central) add a node; prints its join token")
    add.add_argument("name")
    add.add_argument("--size", choices=["minimal", "medium", "full"], default="minimal")
    join = actions.add_parser("join", help="(edge) join a central with a join token")
    join.add_argument("url")
    join.add_argument("token")
    revoke = actions.add_parser("revoke", help="(central) revoke a node")
    revoke.add_argument("name")
    actions.add_parser("status", help="this node's federation state (JSON)")
    federation.set_defaults(func=cmd_federation)
