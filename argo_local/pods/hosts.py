"""A pod's host identity: the node it runs on (``hostNodeName``) and its ``/etc/hosts``.

On a cluster the kubelet writes every pod's ``/etc/hosts`` (kubernetes
pkg/kubelet/kubelet_pods.go ``managedHostsFileContent``): the localhost lines, the pod's IP
with its hostname, then, after ``# Entries added by HostAliases.``, one line per
``hostAliases`` entry (``hostsEntriesFromHostAliases``). Argo puts the workflow's aliases
first, then the template's (workflow/controller/workflowpod.go: ``append(..., wfSpec.HostAliases...)``
then ``tmpl.HostAliases...``). A local pod under bubblewrap gets the same file bound at
``/etc/hosts``; its IP is 127.0.0.1, the address every local pod shares (as ``{{steps.X.ip}}``
says). Without a mount namespace (``--sandbox remap``) a pod reads the machine's own
``/etc/hosts``, so a workflow declaring ``hostAliases`` is refused there before it runs.

The node a local pod runs on is this machine: its hostname, lowercased as the kubelet names its
node (kubernetes pkg/util/node ``GetHostname``), is the pod node's ``hostNodeName``
(operator.go: ``HostNodeName = pod.Spec.NodeName``) and ``{{steps.X.hostNodeName}}``.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

REMAP_REFUSAL = (
    "{where}: hostAliases needs the pod's own /etc/hosts, which only a mount namespace gives "
    "(bubblewrap); with --sandbox remap the pod would read this machine's /etc/hosts"
)

POD_IP = "127.0.0.1"
"""The address a local pod has: it shares the machine's network."""

# kubelet_pods.go managedHostsFileContent: the lines every pod's hosts file starts with
_HEADER = (
    "# Kubernetes-managed hosts file.\n"
    "127.0.0.1\tlocalhost\n"
    "::1\tlocalhost ip6-localhost ip6-loopback\n"
    "fe00::0\tip6-localnet\n"
    "fe00::0\tip6-mcastprefix\n"
    "fe00::1\tip6-allnodes\n"
    "fe00::2\tip6-allrouters\n"
)


@lru_cache(maxsize=1)
def node_name() -> str:
    """This machine's name as a Kubernetes node name (``GetHostname``: trimmed, lowercased)."""
    return socket.gethostname().strip().lower()


def pod_hostname(pod_name: str) -> str:
    """A pod's hostname: its name cut to 63 characters, without a trailing ``-`` or ``.``
    (kubelet_pods.go ``GeneratePodHostNameAndDomain`` / ``truncatePodHostnameIfNeeded``)."""
    return pod_name[:63].rstrip("-.") if len(pod_name) > 63 else pod_name


def aliases(spec: Mapping[str, Any], tmpl: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The pod's host aliases: the workflow's, then the template's (workflowpod.go)."""
    return [*(spec.get("hostAliases") or []), *(tmpl.get("hostAliases") or [])]


def content(pod_name: str, entries: Sequence[Mapping[str, Any]]) -> str:
    """The hosts file the kubelet writes for this pod (``managedHostsFileContent``)."""
    text = _HEADER + f"{POD_IP}\t{pod_hostname(pod_name)}\n"
    if entries:
        # hostsEntriesFromHostAliases
        text += "\n# Entries added by HostAliases.\n"
        for e in entries:
            names = "\t".join(str(n) for n in e.get("hostnames") or [])
            text += f"{e.get('ip')}\t{names}\n"
    return text


def write(pod_dir: Path, pod_name: str, entries: Sequence[Mapping[str, Any]]) -> Path:
    """The pod's hosts file in its folder, for bubblewrap to bind at ``/etc/hosts``."""
    path = pod_dir / "etc-hosts"
    tmp = path.with_suffix(".part")
    tmp.write_text(content(pod_name, entries))
    tmp.replace(path)
    return path
