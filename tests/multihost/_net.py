"""Several hosts on one machine: network namespaces on a bridge (198.18.0.0/24, a benchmarking range).

A switch namespace holds the bridge; every host namespace gets a veth pair
whose far end is plugged into the bridge. Cutting a host off is
``ip -n <switch> link set <its port> down``. Nothing is attached to the
machine's own network namespace, so the test's traffic stays between the
namespaces it created; :meth:`Network.close` deletes them (and with them every veth).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid

__all__ = ["Network", "netns_unavailable"]

SUBNET = "198.18.0"


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and proc.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {proc.stderr.strip()}")
    return proc


def netns_unavailable() -> str | None:
    """Why namespaces cannot be made here, or ``None`` when they can."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "iproute2 ('ip') is not installed"
    name = f"pzprobe{uuid.uuid4().hex[:6]}"
    proc = _ip("netns", "add", name, check=False)
    if proc.returncode != 0:
        return f"cannot create a network namespace: {proc.stderr.strip()}"
    _ip("netns", "del", name, check=False)
    return None


class Network:
    """Namespaces ``db``, ``app1``, ``app2``... on one bridge; ``address[name]`` is each host's IP."""

    def __init__(self, hosts: dict[str, int]) -> None:
        self.tag = uuid.uuid4().hex[:5]
        self.switch = f"pzsw{self.tag}"
        self.ns = {name: f"pz{name}{self.tag}" for name in hosts}
        self.address = {name: f"{SUBNET}.{last}" for name, last in hosts.items()}
        self._port = {name: f"p{self.tag}{i}" for i, name in enumerate(hosts)}
        self._made: list[str] = []
        try:
            self._build()
        except BaseException:
            self.close()
            raise

    def _build(self) -> None:
        _ip("netns", "add", self.switch)
        self._made.append(self.switch)
        _ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.switch, "link", "set", "br0", "up")
        for i, (name, ns) in enumerate(self.ns.items()):
            _ip("netns", "add", ns)
            self._made.append(ns)
            port, inner = self._port[name], f"h{self.tag}{i}"
            # Created in the switch namespace, so no interface ever appears in the machine's own.
            _ip("-n", self.switch, "link", "add", port, "type", "veth", "peer", "name", inner)
            _ip("-n", self.switch, "link", "set", inner, "netns", ns)
            _ip("-n", self.switch, "link", "set", port, "master", "br0")
            _ip("-n", self.switch, "link", "set", port, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", ns, "link", "set", inner, "name", "eth0")
            _ip("-n", ns, "addr", "add", f"{self.address[name]}/24", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")

    def exec_prefix(self, name: str) -> list[str]:
        return ["ip", "netns", "exec", self.ns[name]]

    def cut(self, name: str) -> None:
        """Unplug a host from the switch (its link stays up on its side: packets just vanish)."""
        _ip("-n", self.switch, "link", "set", self._port[name], "down")

    def plug(self, name: str) -> None:
        _ip("-n", self.switch, "link", "set", self._port[name], "up")

    def close(self) -> None:
        for ns in reversed(self._made):
            _ip("netns", "del", ns, check=False)
        self._made.clear()

    def __enter__(self) -> Network:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
