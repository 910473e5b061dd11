"""Build every core of a configured network into one in-process World."""

from __future__ import annotations

import random
from typing import Callable

from .. import config as cfg
from ..acquirer.core import Acquirer
from ..issuer.core import Issuer
from ..security import SecurityModule
from ..switch.core import Switch
from ..terminal.core import Terminal
from .world import World


def seeded_random_bytes(seed: int) -> Callable[[int], bytes]:
    rng = random.Random(seed)
    return lambda n: rng.randbytes(n)


def build_world(net: cfg.Network, now_ms: int, seed: int = 1) -> World:
    """Terminals as ``pos-<TID>``, ``acquirer``, ``switch``, ``issuer-<name>``, linked as on the wire."""
    rand = seeded_random_bytes(seed)

    def hsm() -> SecurityModule:
        return SecurityModule(SecurityModule.generate_lmk(rand), random_bytes=rand)

    world = World(now_ms)
    acq_hsm, sw_hsm = hsm(), hsm()
    world.add("acquirer", Acquirer(cfg.acquirer_config(net, acq_hsm), acq_hsm))
    world.add("switch", Switch(cfg.switch_config(net, sw_hsm), sw_hsm))
    world.connect("acquirer", "switch", "switch", "acquirer:" + net.acquirer["institution_id"])
    for i in net.issuers:
        ih = hsm()
        world.add(f"issuer-{i['name']}", Issuer(cfg.issuer_config(net, i["name"], ih), ih))
        world.connect("switch", f"issuer:{i['name']}", f"issuer-{i['name']}", "switch")
    for t in net.acquirer.get("terminals", []):
        th = hsm()
        tcfg, tmk = cfg.terminal_config(net, t["terminal_id"])
        name = f"pos-{t['terminal_id']}"
        world.add(name, Terminal(tcfg, th, th.import_clear_key(tmk)))
        world.connect(name, "acquirer", "acquirer", f"conn:{name}")
    return world
