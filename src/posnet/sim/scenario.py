"""A network drawn from a seed: issuers, cards, merchants, terminals, keys."""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path
from typing import Any

from .. import clearing_files
from .. import config as cfg
from ..acquirer.core import Acquirer
from ..issuer.core import Issuer
from ..links import LinkLimits
from ..security import SecurityModule
from ..switch.core import Switch
from ..terminal.core import Card, Terminal
from .world import World

ISSUER_NAMES = ("bank-a", "bank-b", "bank-c", "bank-d")
PROTECTION_PASSWORD = "147258"  # every simulated terminal's, so the operator can unlock it


def _key(rng: random.Random) -> str:
    return rng.randbytes(16).hex().upper()


def _luhn_pad(prefix: str, length: int, rng: random.Random) -> str:
    body = prefix + "".join(str(rng.randrange(10)) for _ in range(length - len(prefix) - 1))
    total = 0
    for i, d in enumerate(reversed(body)):
        n = int(d)
        if i % 2 == 0:
            n *= 2
            n -= 9 if n > 9 else 0
        total += n
    return body + str((10 - total % 10) % 10)


def network_for(seed: int, issuers: int = 3, cards_per_issuer: int = 6, terminals: int = 4) -> cfg.Network:
    rng = random.Random(f"scenario:{seed}")
    raw: dict[str, Any] = {
        "network": {"data_dir": "data", "host": "127.0.0.1"},
        "acquirer": {
            "name": "SIM ACQUIRER",
            "institution_id": "48020000",
            "port": 1,
            "zpk": _key(rng),
            "zak": _key(rng),
            "merchants": [
                {"merchant_id": f"8983101481600{m:02d}", "name": f"商户{m}", "mcc": "5411"} for m in range(2)
            ],
            "terminals": [
                {
                    "terminal_id": f"2000{t:04d}",
                    "merchant_id": f"8983101481600{t % 2:02d}",
                    "tmk": _key(rng),
                    "protection_password": PROTECTION_PASSWORD,
                }
                for t in range(terminals)
            ],
        },
        "switch": {"institution_id": "00010000", "port": 2},
        # A simulated day is a few hundred presentments: small slices, so the cut-off is cleared in several.
        "clearing": {"slice_items": 4},
        "issuers": [],
    }
    for i in range(issuers):
        bin_ = f"62{2 + i}{rng.randrange(100, 999)}"
        raw["issuers"].append(
            {
                "name": ISSUER_NAMES[i],
                "institution_id": f"0{i + 1}020000",
                "port": 10 + i,
                "bins": [bin_],
                "zpk": _key(rng),
                "zak": _key(rng),
                "pvk": _key(rng),
                "cards": [
                    {
                        "pan": _luhn_pad(bin_, 16, rng),
                        "expiry": "3012",
                        "pin": f"{rng.randrange(10**6):06d}",
                        "balance": f"{rng.randrange(500, 50_000)}.00",
                        # Every other cardholder has signed up for SMS (动账通知): the rest get none.
                        **({"phone": f"139{i:02d}{n:06d}"} if n % 2 == 0 else {}),
                    }
                    for n in range(cards_per_issuer)
                ],
            }
        )
    return cfg.Network(Path("sim.toml"), raw)


def cards_of(net: cfg.Network) -> list[tuple[Card, str]]:
    return [(Card(c["pan"], c["expiry"]), c["pin"]) for c in net.cards()]


def build(net: cfg.Network, now_ms: int, seed: int = 1, links: LinkLimits | None = None) -> World:
    """Every party of ``net`` as a core in one world, each with a seeded security module and a factory
    that builds it again after a crash."""
    rng = random.Random(f"keys:{seed}")

    def make_hsm() -> SecurityModule:
        lmk = SecurityModule.generate_lmk(rng.randbytes)
        stream = random.Random(rng.random())
        return SecurityModule(lmk, random_bytes=stream.randbytes)

    world = World(now_ms)

    def party(name: str, build_core) -> None:
        hsm = make_hsm()
        world.add(name, build_core(hsm), factory=lambda: build_core(hsm))

    links = links or LinkLimits()
    party("acquirer", lambda h: Acquirer(replace(cfg.acquirer_config(net, h), link=links), h))
    party("switch", lambda h: Switch(replace(cfg.switch_config(net, h), link=links), h))
    world.connect("acquirer", "switch", "switch", "acquirer:" + net.acquirer["institution_id"])
    world.box_owner[clearing_files.SWITCH_BOX] = "switch"
    for i in net.issuers:
        name = f"issuer-{i['name']}"
        party(name, lambda h, n=i["name"]: Issuer(cfg.issuer_config(net, n, h), h))
        world.connect("switch", f"issuer:{i['name']}", name, "switch")
        world.box_owner[clearing_files.issuer_box(i["name"])] = name
    for t in net.acquirer["terminals"]:
        tcfg, tmk = cfg.terminal_config(net, t["terminal_id"])
        name = f"pos-{t['terminal_id']}"
        party(name, lambda h, c=tcfg, k=tmk: Terminal(c, h, h.import_clear_key(k)))
        world.connect(name, "acquirer", "acquirer", f"conn:{name}")
    return world
