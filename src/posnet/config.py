"""The network described in one TOML file (docs/configuration.md).

``load(path)`` parses and checks the file into plain data; the ``*_config``
functions turn a party's part into its core's configuration, importing the
clear keys of the file into that party's security module (provisioning), so
the cores only ever hold key handles.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datetime import time

from .acquirer.core import AcquirerConfig, Merchant, TerminalEntry
from .clearing_files import ClearingRates, FeeRate, parse_cutoff, parse_rate
from .issuer.core import CardRecord, IssuerConfig
from .security import SecurityModule
from .switch.clearing import SLICE_ITEMS
from .switch.core import IssuerRoute, SwitchConfig, ZoneKeys
from .terminal.core import TerminalConfig
from .terminal.devices import PASSWORD_MIN_LENGTH, SALT_BYTES, DeviceSettings

# Device limits a [[acquirer.terminals]] entry may set, each in the unit its name ends with.
DEVICE_LIMIT_KEYS = ("paper_roll_mm", "battery_warning_mv", "battery_protection_mv", "password_tries_max", "password_lockout_ms")


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int


@dataclass
class Network:
    path: Path
    raw: dict[str, Any]

    @property
    def data_dir(self) -> Path:
        d = Path(self.raw.get("network", {}).get("data_dir", "data"))
        return d if d.is_absolute() else (self.path.parent / d)

    @property
    def clearing_dir(self) -> Path:
        """Where members exchange clearing files, and reports are left (docs/clearing.md)."""
        d = Path(self.raw.get("clearing", {}).get("folder", self.data_dir / "clearing"))
        return d if d.is_absolute() else (self.path.parent / d)

    @property
    def host(self) -> str:
        return self.raw.get("network", {}).get("host", "127.0.0.1")

    @property
    def acquirer(self) -> dict[str, Any]:
        return self.raw["acquirer"]

    @property
    def switch(self) -> dict[str, Any]:
        return self.raw["switch"]

    @property
    def issuers(self) -> list[dict[str, Any]]:
        return self.raw["issuers"]

    def party_names(self) -> list[str]:
        return ["acquirer", "switch", *(f"issuer-{i['name']}" for i in self.issuers)]

    def endpoint(self, party: str) -> Endpoint:
        if party == "acquirer":
            return Endpoint(self.host, int(self.acquirer["port"]))
        if party == "switch":
            return Endpoint(self.host, int(self.switch["port"]))
        for i in self.issuers:
            if party == f"issuer-{i['name']}":
                return Endpoint(self.host, int(i["port"]))
        raise ConfigError(f"no party {party!r} in {self.path}")

    def terminal(self, terminal_id: str | None) -> dict[str, Any]:
        terminals = self.acquirer.get("terminals", [])
        if not terminals:
            raise ConfigError("the acquirer has no terminals")
        if terminal_id is None:
            return terminals[0]
        for t in terminals:
            if t["terminal_id"] == terminal_id:
                return t
        raise ConfigError(f"no terminal {terminal_id!r} in {self.path}")

    def merchant(self, merchant_id: str) -> dict[str, Any]:
        for m in self.acquirer.get("merchants", []):
            if m["merchant_id"] == merchant_id:
                return m
        raise ConfigError(f"no merchant {merchant_id!r} in {self.path}")

    def cards(self) -> list[dict[str, Any]]:
        return [c for i in self.issuers for c in i.get("cards", [])]

    def card(self, pan: str | None) -> dict[str, Any] | None:
        for c in self.cards():
            if pan is None or c["pan"] == pan:
                return c
        return None


_HEX_KEY = re.compile(r"^[0-9A-Fa-f]{32}$")


def _need(section: dict[str, Any], key: str, where: str) -> Any:
    if key not in section:
        raise ConfigError(f"{where}: missing '{key}'")
    return section[key]


def _key(section: dict[str, Any], key: str, where: str) -> str:
    value = str(_need(section, key, where))
    if not _HEX_KEY.match(value):
        raise ConfigError(f"{where}: '{key}' must be a double-length key, 32 hex characters")
    return value.upper()


def load(path: str | os.PathLike[str]) -> Network:
    p = Path(path)
    try:
        raw = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such file; `posnet init DIR` writes a demo network") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{p}: {e}") from None
    net = Network(p.resolve(), raw)
    _check(net)
    return net


def _check(net: Network) -> None:
    for section in ("acquirer", "switch"):
        if section not in net.raw:
            raise ConfigError(f"{net.path}: missing [{section}]")
    if not net.raw.get("issuers"):
        raise ConfigError(f"{net.path}: at least one [[issuers]] is needed")
    a = net.acquirer
    for k in ("institution_id", "port"):
        _need(a, k, "[acquirer]")
    _key(a, "zpk", "[acquirer]")
    _key(a, "zak", "[acquirer]")
    mids = {m["merchant_id"] for m in a.get("merchants", [])}
    for m in a.get("merchants", []):
        if len(m["merchant_id"]) != 15:
            raise ConfigError(f"merchant {m['merchant_id']!r}: a merchant id is 15 characters")
    for t in a.get("terminals", []):
        where = f"terminal {t.get('terminal_id')!r}"
        if len(_need(t, "terminal_id", where)) != 8:
            raise ConfigError(f"{where}: a terminal id is 8 characters")
        if _need(t, "merchant_id", where) not in mids:
            raise ConfigError(f"{where}: merchant {t['merchant_id']!r} is not among [[acquirer.merchants]]")
        _key(t, "tmk", where)
        if "protection_password" in t and len(str(t["protection_password"])) < PASSWORD_MIN_LENGTH:
            raise ConfigError(f"{where}: a protection_password has at least {PASSWORD_MIN_LENGTH} characters")
    if "transport_key" in a:
        _key(a, "transport_key", "[acquirer]")
    _check_operators(a.get("operators", []))
    _need(net.switch, "institution_id", "[switch]")
    _need(net.switch, "port", "[switch]")
    names = set()
    for i in net.issuers:
        where = f"issuer {i.get('name')!r}"
        for k in ("name", "institution_id", "port", "bins"):
            _need(i, k, where)
        if i["name"] in names:
            raise ConfigError(f"{where}: two issuers with one name")
        names.add(i["name"])
        for k in ("zpk", "zak", "pvk"):
            _key(i, k, where)
        for c in i.get("cards", []):
            cw = f"card {c.get('pan', '?')[:6]}… of {where}"
            pan = str(_need(c, "pan", cw))
            if not (pan.isdigit() and 13 <= len(pan) <= 19):
                raise ConfigError(f"{cw}: a PAN is 13 to 19 digits")
            if not any(pan.startswith(b) for b in i["bins"]):
                raise ConfigError(f"{cw}: the PAN is outside the issuer's BINs")
            exp = str(_need(c, "expiry", cw))
            if not (exp.isdigit() and len(exp) == 4):
                raise ConfigError(f"{cw}: expiry is YYMM")
            if "pin" not in c and "pin_offset" not in c:
                raise ConfigError(f"{cw}: give 'pin' (or 'pin_offset')")
            if c.get("status", "active") not in ("active", "lost", "stolen", "blocked"):
                raise ConfigError(f"{cw}: status is one of active, lost, stolen, blocked")
    if not isinstance(net.raw.get("network", {}).get("dev_clock", False), bool):
        raise ConfigError(f"{net.path}: [network] dev_clock is true or false")
    clearing_settings(net)  # a bad [clearing] section is named at load time
    from .runtime.chaos import plan_proxies  # here: the chaos module reads this one

    plan_proxies(net)  # a bad [chaos] section is named at load time
    for i in net.issuers:
        sms_settings(net, i)  # a bad [sms] section is named at load time


def _port_ok(url) -> bool:
    try:
        return url.port is None or url.port > 0
    except ValueError:
        return False


@dataclass(frozen=True)
class SmsSettings:
    """An issuer's SMS to its cardholders (docs/sms.md): ``[sms]``, overridden key by key by the
    issuer's own ``[issuers.sms]``."""

    webhook_url: str = ""  # the SMS gateway; empty: the local inbox only
    on_post: bool = False  # an SMS also when clearing posts a hold (入账)
    timeout_ms: int = 5_000  # one POST to the gateway
    retry_first_ms: int = 500  # the first wait after a failed delivery, doubled after each failure
    retry_cap_ms: int = 60_000  # the longest wait between two attempts

    @property
    def channels(self) -> tuple[str, ...]:
        """Where each SMS must reach before it leaves the outbox: the local inbox, and the gateway if set."""
        return ("inbox", "webhook") if self.webhook_url else ("inbox",)


def sms_settings(net: Network, issuer: dict[str, Any]) -> SmsSettings:
    from urllib.parse import urlsplit

    where = f"[sms] of issuer {issuer.get('name')!r}"
    if not all(isinstance(t, dict) for t in (net.raw.get("sms", {}), issuer.get("sms", {}))):
        raise ConfigError(f"{where}: [sms] is a table of settings")
    merged = {**net.raw.get("sms", {}), **issuer.get("sms", {})}
    kinds = {k: type(v) for k, v in vars(SmsSettings()).items()}
    for k, v in merged.items():
        if k not in kinds:
            raise ConfigError(f"{where}: unknown key {k!r}; the keys are {', '.join(kinds)}")
        if kinds[k] is int and (type(v) is not int or v <= 0):
            raise ConfigError(f"{where}: {k} is a whole number of milliseconds, above 0")
        if type(v) is not kinds[k] and kinds[k] is not int:
            raise ConfigError(f"{where}: {k} is {'true or false' if kinds[k] is bool else 'a string'}")
    url = urlsplit(merged.get("webhook_url", ""))
    if merged.get("webhook_url") and (url.scheme not in ("http", "https") or not url.hostname or not _port_ok(url)):
        raise ConfigError(f"{where}: webhook_url is an http:// or https:// URL, e.g. http://127.0.0.1:8080/sms")
    settings = SmsSettings(**merged)
    if settings.retry_first_ms > settings.retry_cap_ms:
        raise ConfigError(f"{where}: retry_first_ms is at most retry_cap_ms")
    if not isinstance(issuer.get("display_name", ""), str):
        raise ConfigError(f"issuer {issuer.get('name')!r}: display_name is a string, e.g. \"posnet银行\"")
    return settings


def _check_operators(operators: Any) -> None:
    """[acquirer] operators: the names that may request and approve manual credits."""
    from .acquirer.manual_credit import OPERATOR_MAX_CHARS

    if not isinstance(operators, list) or not all(isinstance(o, str) and o.strip() == o and o for o in operators):
        raise ConfigError("[acquirer] operators: a list of names, e.g. [\"alice\", \"bob\"]")
    if len(set(operators)) != len(operators):
        raise ConfigError("[acquirer] operators: a name appears twice")
    if any(len(o) > OPERATOR_MAX_CHARS for o in operators):
        raise ConfigError(f"[acquirer] operators: a name has at most {OPERATOR_MAX_CHARS} characters")


def yuan_to_fen(value: Any) -> int:
    """'12.34' or 12.34 or 12 -> 1234, exactly (no binary floating point)."""
    from decimal import Decimal, InvalidOperation

    try:
        d = Decimal(str(value))
    except InvalidOperation:
        raise ConfigError(f"{value!r} is not an amount in yuan") from None
    fen = d * 100
    if fen != fen.to_integral_value():
        raise ConfigError(f"{value!r} has more than two decimals")
    return int(fen)


# -- party configurations -------------------------------------------------------


def acquirer_config(net: Network, hsm: SecurityModule) -> AcquirerConfig:
    a = net.acquirer
    return AcquirerConfig(
        institution_id=a["institution_id"],
        name=a.get("name", "POSNET ACQUIRER"),
        zpk=hsm.import_clear_key(a["zpk"]),
        zak=hsm.import_clear_key(a["zak"]),
        merchants={
            m["merchant_id"]: Merchant(
                m["merchant_id"],
                m["name"],
                str(m.get("mcc", "5411")),
                fee_rate_bp=int(m.get("fee_rate_bp", 60)),
                account_id=int(m.get("account", 1000 + n)),
            )
            for n, m in enumerate(a.get("merchants", []))
        },
        terminals={
            t["terminal_id"]: TerminalEntry(t["terminal_id"], t["merchant_id"], hsm.import_clear_key(t["tmk"]))
            for t in a.get("terminals", [])
        },
        host_timeout_ms=int(a.get("host_timeout_ms", 20_000)),
        operators=tuple(a.get("operators", [])),
    )


def clearing_settings(net: Network) -> tuple[time, ClearingRates]:
    """[clearing]: the daily cut-off and the scheme's rates (docs/clearing.md)."""
    c = net.raw.get("clearing", {})
    try:
        cutoff = parse_cutoff(str(c.get("cutoff", "23:00")))
        defaults = ClearingRates()
        rates = ClearingRates(
            FeeRate(parse_rate(c["interchange_rate"]) if "interchange_rate" in c else defaults.interchange.ppm,
                    yuan_to_fen(str(c["interchange_cap"])) if "interchange_cap" in c else defaults.interchange.cap_fen),
            FeeRate(parse_rate(c["scheme_fee_rate"]) if "scheme_fee_rate" in c else defaults.scheme_fee.ppm,
                    yuan_to_fen(str(c["scheme_fee_cap"])) if "scheme_fee_cap" in c else defaults.scheme_fee.cap_fen),
        )
    except (ValueError, ConfigError) as e:
        raise ConfigError(f"[clearing] {e}") from None
    return cutoff, rates


def clearing_slice_items(net: Network) -> int:
    """[clearing] slice_items: how many presentments the switch clears in one input after the cut-off."""
    value = net.raw.get("clearing", {}).get("slice_items", SLICE_ITEMS)
    if type(value) is not int or value < 1:
        raise ConfigError(f"[clearing] slice_items {value!r}: give a whole number of presentments, at least 1")
    return value


def switch_config(net: Network, hsm: SecurityModule) -> SwitchConfig:
    a = net.acquirer
    cutoff, rates = clearing_settings(net)
    return SwitchConfig(
        cutoff=cutoff,
        rates=rates,
        clearing_slice_items=clearing_slice_items(net),
        institution_id=net.switch["institution_id"],
        acquirers={a["institution_id"]: ZoneKeys(hsm.import_clear_key(a["zpk"]), hsm.import_clear_key(a["zak"]))},
        issuers={
            i["name"]: IssuerRoute(
                i["name"],
                i["institution_id"],
                tuple(str(b) for b in i["bins"]),
                ZoneKeys(hsm.import_clear_key(i["zpk"]), hsm.import_clear_key(i["zak"])),
            )
            for i in net.issuers
        },
        issuer_timeout_ms=int(net.switch.get("issuer_timeout_ms", 10_000)),
    )


def issuer_config(net: Network, name: str, hsm: SecurityModule) -> IssuerConfig:
    i = next((i for i in net.issuers if i["name"] == name), None)
    if i is None:
        raise ConfigError(f"no issuer {name!r}")
    pvk = hsm.import_clear_key(i["pvk"])
    sms = sms_settings(net, i)
    cards: dict[str, CardRecord] = {}
    balances: dict[int, int] = {}
    for n, c in enumerate(i.get("cards", [])):
        account_id = int(c.get("account", 1000 + n))
        # Provisioning: the clear PIN of the file becomes an IBM 3624 offset; only the offset is kept.
        offset = str(c["pin_offset"]) if "pin_offset" in c else hsm.pin_offset(pvk, c["pan"], str(c["pin"]))
        cards[c["pan"]] = CardRecord(
            pan=c["pan"],
            expiry=str(c["expiry"]),
            account_id=account_id,
            pin_offset=offset,
            status=c.get("status", "active"),
            per_transaction_limit_fen=yuan_to_fen(c.get("limit", "50000.00")),
            cardholder=c.get("cardholder", ""),
            phone=str(c.get("phone", "")),
        )
        if "balance" in c:
            balances[account_id] = yuan_to_fen(c["balance"])
    return IssuerConfig(
        name=name,
        institution_id=i["institution_id"],
        zpk=hsm.import_clear_key(i["zpk"]),
        zak=hsm.import_clear_key(i["zak"]),
        pvk=pvk,
        cards=cards,
        opening_balances_fen=balances,
        hold_expiry_s=int(float(i.get("hold_expiry_hours", 48)) * 3600),
        cutoff=clearing_settings(net)[0],
        display_name=i.get("display_name", ""),
        sms_on_post=sms.on_post,
        sms_channels=sms.channels,
    )


def terminal_config(net: Network, terminal_id: str | None) -> tuple[TerminalConfig, str]:
    """The terminal's configuration and its clear TMK (for its own security module)."""
    t = net.terminal(terminal_id)
    m = net.merchant(t["merchant_id"])
    return (
        TerminalConfig(
            terminal_id=t["terminal_id"],
            merchant_id=t["merchant_id"],
            merchant_name=m["name"],
            acquirer_name=net.acquirer.get("name", "POSNET"),
            response_timeout_ms=int(t.get("response_timeout_ms", 30_000)),
            reverse_at_once=bool(t.get("reverse_at_once", False)),
            reversal_attempts=int(t.get("reversal_attempts", 3)),
            auto_sign_on=bool(t.get("auto_sign_on", True)),
            device=terminal_device_settings(t),
        ),
        t["tmk"],
    )


def terminal_device_settings(t: dict[str, Any]) -> DeviceSettings:
    """A terminal's paper, battery and protection password (docs/terminal.md). A clear password is
    salted here and hashed when the terminal first needs it; only the hash is ever stored."""
    limits: dict[str, Any] = {k: int(t[k]) for k in DEVICE_LIMIT_KEYS if k in t}
    if "on_mains" in t:
        limits["on_mains_at_start"] = bool(t["on_mains"])
    password = t.get("protection_password")
    try:
        return DeviceSettings(
            **limits,
            protection_password_hash=t.get("protection_password_hash"),
            protection_password=str(password) if password is not None else None,
            password_salt_hex=os.urandom(SALT_BYTES).hex() if password is not None else "",
        )
    except AssertionError:
        raise ConfigError(f"terminal {t['terminal_id']!r}: battery levels must rise: protection < warning") from None
