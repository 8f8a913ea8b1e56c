"""Options that several sub-commands share, each turned into its typed value at the door."""

from __future__ import annotations

import argparse

from infra.cluster import ClusterSpec, parse_cluster
from infra.errors import UserError

CLUSTER_HELP = ("run on Dask: 'local' (one worker process per core), 'local:N' (N workers), or "
                "tcp://HOST:PORT / tls://HOST:PORT (an existing scheduler; files on shared storage)")


def add_cluster_option(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """Register ``--cluster SPEC`` (default: no cluster, one process as always)."""
    parser.add_argument("--cluster", type=_cluster_spec, default=None, metavar="SPEC",
                        help=CLUSTER_HELP)


def _cluster_spec(text: str) -> ClusterSpec:
    try:
        return parse_cluster(text)
    except UserError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
