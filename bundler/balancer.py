"""``llmcrate deploy --balancer haproxy``: a load balancer config in front of the fleet (issue 13).

HAProxy was chosen over nginx because its open-source edition has active health checks
(``option httpchk``: a host that stops answering is taken out and put back without a request
failing first) and ``leastconn``; nginx OSS only marks a backend down after real requests
fail through it. The backends come from the same inventory ``llmcrate deploy`` uses: each
host's ``llmcrate_host`` port, and its address unless it listens on all addresses (then
``ansible_host`` or the inventory name).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal

import jinja2

from bundler.deploy import InventoryHost, inventory_hosts
from runtime.config import DEFAULT_PORT, parse_host
from runtime.errors import ConfigError, DeployError

Balancer = Literal["haproxy"]
_WILDCARDS = ("0.0.0.0", "::", "")
_SERVER_NAME = re.compile(r"[^A-Za-z0-9_.:-]")


@dataclass(frozen=True)
class Backend:
    name: str
    address: str
    port: int

    @property
    def endpoint(self) -> str:
        return f"[{self.address}]:{self.port}" if ":" in self.address else f"{self.address}:{self.port}"


def backends_of(hosts: list[InventoryHost]) -> list[Backend]:
    """One backend per inventory host (address and port as described in the module docstring)."""
    out = []
    for h in hosts:
        listen = str(h.vars.get("llmcrate_host") or "")
        try:
            addr = parse_host(listen) if listen else None
        except ConfigError as e:
            raise DeployError(f"host {h.name}: llmcrate_host {listen!r}: {e}") from e
        address = addr.host if addr and addr.host not in _WILDCARDS and listen.split(":")[0] else ""
        if not address:
            address = str(h.vars.get("ansible_host") or h.name)
        out.append(Backend(name=_SERVER_NAME.sub("_", h.name), address=address,
                           port=addr.port if addr else DEFAULT_PORT))
    if not out:
        raise DeployError("the inventory has no hosts")
    return out


def render_haproxy(backends: list[Backend], *, bind: str = "0.0.0.0:11434",
                   check_interval: str = "2s", stats_socket: str | None = None) -> str:
    """The HAProxy config text.

    Args:
        backends: the llmcrate servers.
        bind: HAProxy's listening ADDR:PORT.
        check_interval: time between health checks of a backend.
        stats_socket: optional admin socket path (``show stat``; tests use it).
    """
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                             trim_blocks=True, lstrip_blocks=True, autoescape=False)
    source = resources.files("bundler.fleet").joinpath("haproxy.cfg.j2").read_text()
    return env.from_string(source).render(backends=backends, bind=bind,
                                          check_interval=check_interval, stats_socket=stats_socket)


def balancer_config(inventory: Path, *, kind: Balancer = "haproxy", bind: str = "0.0.0.0:11434",
                    limit: str | None = None) -> str:
    """The balancer config for the hosts of ``inventory``."""
    if kind != "haproxy":
        raise DeployError(f"unsupported balancer {kind!r} (haproxy)")
    return render_haproxy(backends_of(inventory_hosts(inventory, limit=limit)), bind=bind)


__all__ = ["Backend", "backends_of", "balancer_config", "render_haproxy"]
