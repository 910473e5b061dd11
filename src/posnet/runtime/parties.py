"""Open a party of a configured network: its security module, store, core and links."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
from pathlib import Path
from typing import Any

from .. import clearing_files
from .. import config as cfg
from ..acquirer.core import Acquirer
from ..issuer.core import Issuer
from ..security import SecurityModule
from ..switch.core import Switch
from . import chaos, control, notifier
from .clearing_io import ClearingBoxes
from .clock import NetworkClock
from .node import LinkSpec, PartyNode
from .store import PartyStore

log = logging.getLogger("posnet.runtime")

LMK_FILE = "lmk.hex"


def party_dir(net: cfg.Network, party: str) -> Path:
    d = net.data_dir / party
    d.mkdir(parents=True, exist_ok=True)
    return d


def security_module(directory: Path) -> SecurityModule:
    """The party's security module. Its LMK is made once and kept in the party's folder
    (a real deployment keeps it inside a hardware security module)."""
    path = directory / LMK_FILE
    if not path.exists():
        lmk = SecurityModule.generate_lmk()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(lmk.hex())
    return SecurityModule(bytes.fromhex(path.read_text().strip()))


def store_location(net: cfg.Network, party: str) -> str:
    url = net.raw.get("network", {}).get("database")
    if url:
        return url
    return str(party_dir(net, party) / f"{party}.sqlite")


def party_schema(net: cfg.Network, party: str) -> str:
    """The PostgreSQL schema of a party, when the network keeps its data there."""
    prefix = net.raw.get("network", {}).get("schema_prefix", "posnet")
    return f"{prefix}_{party.replace('-', '_')}"


def clearing_box_of(net: cfg.Network, party: str) -> str | None:
    """The box of clearing files a party reads (posnet.clearing_files)."""
    if party == "switch":
        return clearing_files.SWITCH_BOX
    if party.startswith("issuer-"):
        return clearing_files.issuer_box(party[len("issuer-") :])
    return None


def open_party(net: cfg.Network, party: str) -> tuple[PartyNode, list[Any]]:
    d = party_dir(net, party)
    hsm = security_module(d)
    location = store_location(net, party)
    schema = party_schema(net, party) if location.startswith("postgres") else None
    ep = net.endpoint(party)
    clock = NetworkClock.of(net)  # a restarted party takes the network's time, advanced or not
    links: list[LinkSpec] = []
    if party == "acquirer":
        store = PartyStore(location, with_ledger=True, schema=schema)
        core: Any = Acquirer(cfg.acquirer_config(net, hsm), hsm, store.load_ledger())
        links.append(LinkSpec("switch", *chaos.upstream_endpoint(net, "acquirer", "switch")))
        restore = core.restore(store.load(), clock.now_ms())
    elif party == "switch":
        store = PartyStore(location, with_ledger=True, schema=schema)
        core = Switch(cfg.switch_config(net, hsm), hsm, store.load_ledger())
        for i in net.issuers:
            links.append(LinkSpec(f"issuer:{i['name']}", *chaos.upstream_endpoint(net, "switch", f"issuer-{i['name']}")))
        restore = core.restore(store.load(), clock.now_ms())
    elif party.startswith("issuer-"):
        store = PartyStore(location, with_ledger=True, schema=schema)
        core = Issuer(cfg.issuer_config(net, party[len("issuer-") :], hsm), hsm, store.load_ledger())
        restore = core.restore(store.load(), clock.now_ms())
    else:
        raise cfg.ConfigError(f"no party {party!r}; the parties are {', '.join(net.party_names())}")
    node = PartyNode(party, core, store, (ep.host, ep.port), links, trace_path=d / "trace.jsonl", clock=clock)
    if party.startswith("issuer-"):
        notifier.attach(node, net, party, d)  # the SMS to its cardholders
    return node, restore


async def serve(net: cfg.Network, party: str, ready: "asyncio.Event | None" = None) -> None:
    node, restore = open_party(net, party)
    # The hot state is built once and lives as long as the process: keep the collector from
    # scanning it again and again (millions of ledger objects at scale).
    gc.collect()
    gc.freeze()
    boxes = ClearingBoxes(net.clearing_dir)
    node.publish = boxes.publish
    await node.start(restore)
    operator = await control.serve(node, party_dir(net, party))  # operator commands (posnet acquirer …)
    inbox = clearing_box_of(net, party)
    watcher = asyncio.create_task(boxes.watch(node, inbox)) if inbox else None
    log.info("%s listening on %s:%d", party, *node.listen)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if ready:
        ready.set()
    await stop.wait()
    if watcher:
        watcher.cancel()
    operator.close()
    control.socket_path(party_dir(net, party)).unlink(missing_ok=True)
    await node.stop()


def run(net: cfg.Network, party: str) -> None:
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {party} %(levelname)s %(message)s")
    try:
        import uvloop

        uvloop.run(serve(net, party))
    except ImportError:  # pragma: no cover - uvloop is a dependency on every supported platform
        asyncio.run(serve(net, party))
