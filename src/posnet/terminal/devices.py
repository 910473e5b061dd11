"""The terminal's devices as state machines: the printer's paper roll, the battery, the tamper switches.

Plain data and rules, no I/O and no clock: the terminal core owns one of each,
hands them the time, and persists them after every change (table ``device``),
so a power cut loses nothing. DOMAIN.md §3, device states.

Every limit is a named setting with its unit; ``DeviceSettings`` holds the
defaults a terminal gets when its configuration says nothing.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import asdict, dataclass, field
from typing import Any

# -- printer (热敏打印机) ----------------------------------------------------------

PAPER_ROLL_MM = 20_000  # a 57 mm thermal roll of 20 m
LINE_FEED_MM = 4  # one printed line (24-dot font plus spacing) takes 4 mm of paper
CUT_FEED_MM = 12  # paper fed past the cutter after each slip

# -- battery (two Li-ion cells in series, 7.4 V nominal) --------------------------

BATTERY_FULL_MV = 8_400
BATTERY_EMPTY_MV = 6_400  # the level a percentage counts from
BATTERY_WARNING_MV = 7_300  # below: the screen warns, the terminal still works
BATTERY_PROTECTION_MV = 7_000  # below: low-voltage protection (低压保护), no online function, no printing
ONLINE_DRAIN_UV = 500  # the radio of one online function costs 0.5 mV
LINE_DRAIN_UV = 20  # the print head, per printed line: 0.02 mV (a sale with two slips: ~1.4 mV, ~1000 a charge)
CHARGE_UV_PER_S = 2_000  # on mains the battery charges 2 mV a second

# -- tamper (防拆) and the protection password -------------------------------------

PASSWORD_TRIES_MAX = 3  # wrong protection passwords in a row before a lockout
PASSWORD_LOCKOUT_MS = 30 * 60_000  # how long the password is refused after too many wrong ones
PASSWORD_MIN_LENGTH = 6
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1  # 16 MiB of memory per attempt, ~40 ms here
SALT_BYTES = 16


@dataclass(frozen=True)
class DeviceSettings:
    """A terminal's device limits (the ``[[acquirer.terminals]]`` entry may set each)."""

    paper_roll_mm: int = PAPER_ROLL_MM
    line_feed_mm: int = LINE_FEED_MM
    cut_feed_mm: int = CUT_FEED_MM
    battery_full_mv: int = BATTERY_FULL_MV
    battery_empty_mv: int = BATTERY_EMPTY_MV
    battery_warning_mv: int = BATTERY_WARNING_MV
    battery_protection_mv: int = BATTERY_PROTECTION_MV
    online_drain_uv: int = ONLINE_DRAIN_UV
    line_drain_uv: int = LINE_DRAIN_UV
    charge_uv_per_s: int = CHARGE_UV_PER_S
    # A countertop terminal runs on its adapter (mains); a mobile one on its battery.
    on_mains_at_start: bool = True
    password_tries_max: int = PASSWORD_TRIES_MAX
    password_lockout_ms: int = PASSWORD_LOCKOUT_MS
    # Provisioning: the protection password, as a salted hash (``hash_password``) or in clear with
    # a salt, hashed when the terminal first needs it; the terminal's store keeps only the hash.
    # Neither: no password was set, and a locked terminal stays locked.
    protection_password_hash: str | None = None
    protection_password: str | None = field(default=None, repr=False)
    password_salt_hex: str = ""

    def password_hash(self) -> str | None:
        if self.protection_password_hash:
            return self.protection_password_hash
        if self.protection_password:
            return hash_password(self.protection_password, bytes.fromhex(self.password_salt_hex))
        return None

    def __post_init__(self) -> None:
        assert self.battery_empty_mv < self.battery_protection_mv < self.battery_warning_mv < self.battery_full_mv
        assert self.line_feed_mm > 0 and self.paper_roll_mm >= 0 and self.password_tries_max > 0


# -- the password -------------------------------------------------------------------


def hash_password(password: str, salt: bytes) -> str:
    """``scrypt$N$r$p$salt$hash``: what the terminal keeps of its protection password."""
    if len(password) < PASSWORD_MIN_LENGTH:
        raise ValueError(f"a protection password has at least {PASSWORD_MIN_LENGTH} characters")
    if len(salt) < SALT_BYTES:
        raise ValueError(f"a salt has at least {SALT_BYTES} bytes")
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    got = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p), dklen=32)
    return hmac.compare_digest(got.hex(), digest)


# -- the models -----------------------------------------------------------------------


@dataclass
class Printer:
    """The paper roll. Paper out is found before a slip starts and while it prints."""

    paper_mm: int
    printed_lines: int = 0  # over the terminal's life

    def lines_left(self, s: DeviceSettings) -> int:
        return self.paper_mm // s.line_feed_mm

    @property
    def has_paper(self) -> bool:
        return self.paper_mm > 0

    def feed_line(self, s: DeviceSettings) -> bool:
        """One line onto the paper; False when there is no paper left for it."""
        if self.paper_mm < s.line_feed_mm:
            self.paper_mm = 0  # the sensor sees the end of the roll
            return False
        self.paper_mm -= s.line_feed_mm
        self.printed_lines += 1
        return True

    def cut(self, s: DeviceSettings) -> None:
        self.paper_mm = max(0, self.paper_mm - s.cut_feed_mm)

    def load(self, length_mm: int) -> None:
        assert length_mm > 0, "a roll has paper on it"
        self.paper_mm = length_mm

    def remove(self) -> None:
        self.paper_mm = 0


@dataclass
class Battery:
    """A voltage that falls with each online function and each printed line, and rises on mains.

    On mains the adapter powers the terminal: the low-voltage protection does not apply.
    """

    voltage_uv: int
    on_mains: bool = False
    since_ms: int = 0  # when the charger was plugged in (the voltage is worked out from it)

    def voltage_mv(self, s: DeviceSettings, now_ms: int) -> int:
        return self._now_uv(s, now_ms) // 1000

    def _now_uv(self, s: DeviceSettings, now_ms: int) -> int:
        if not self.on_mains:
            return self.voltage_uv
        charged = max(0, now_ms - self.since_ms) * s.charge_uv_per_s // 1000
        return min(s.battery_full_mv * 1000, self.voltage_uv + charged)

    def percent(self, s: DeviceSettings, now_ms: int) -> int:
        span = s.battery_full_mv - s.battery_empty_mv
        return max(0, min(100, (self.voltage_mv(s, now_ms) - s.battery_empty_mv) * 100 // span))

    def protected(self, s: DeviceSettings, now_ms: int) -> bool:
        """Low-voltage protection (低压保护): too low to go online or to print."""
        return not self.on_mains and self._now_uv(s, now_ms) < s.battery_protection_mv * 1000

    def low(self, s: DeviceSettings, now_ms: int) -> bool:
        return not self.on_mains and self._now_uv(s, now_ms) < s.battery_warning_mv * 1000

    def drain(self, s: DeviceSettings, uv: int) -> None:
        assert uv >= 0
        if not self.on_mains:
            self.voltage_uv = max(0, self.voltage_uv - uv)

    def set_level(self, s: DeviceSettings, voltage_mv: int, now_ms: int) -> None:
        assert voltage_mv >= 0
        self.voltage_uv = min(voltage_mv, s.battery_full_mv) * 1000
        self.since_ms = now_ms

    def plug(self, now_ms: int) -> None:
        if not self.on_mains:
            self.on_mains, self.since_ms = True, now_ms

    def unplug(self, s: DeviceSettings, now_ms: int) -> None:
        if self.on_mains:
            self.voltage_uv = self._now_uv(s, now_ms)
            self.on_mains = False


@dataclass
class Tamper:
    """保护状态: a shock or an opened case locks the terminal; the password unlocks it."""

    password_hash: str | None = None
    locked: bool = False
    reason: str = ""  # "shock" or "case opened"
    since_ms: int = 0
    keys_erased: bool = False  # an opened case erased every key: a new TMK must be injected
    wrong_tries: int = 0
    lockout_until_ms: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)  # the last tamper events, newest last

    EVENTS_KEPT = 20  # tamper events kept for the service provider

    def trip(self, reason: str, now_ms: int) -> None:
        self.locked, self.reason, self.since_ms = True, reason, now_ms
        if reason == "case opened":
            self.keys_erased = True
        self.events = (self.events + [{"event": reason, "at_ms": now_ms}])[-self.EVENTS_KEPT :]

    def locked_out(self, now_ms: int) -> bool:
        return now_ms < self.lockout_until_ms

    def try_password(self, password: str, s: DeviceSettings, now_ms: int) -> str:
        """'unlocked', 'wrong', 'locked out' or 'no password'."""
        if self.locked_out(now_ms):
            return "locked out"
        if not self.password_hash:
            return "no password"
        if verify_password(password, self.password_hash):
            self.locked, self.reason, self.wrong_tries = False, "", 0
            self.events = (self.events + [{"event": "unlocked", "at_ms": now_ms}])[-self.EVENTS_KEPT :]
            return "unlocked"
        self.wrong_tries += 1
        if self.wrong_tries >= s.password_tries_max:
            self.wrong_tries = 0
            self.lockout_until_ms = now_ms + s.password_lockout_ms
            return "locked out"
        return "wrong"


@dataclass
class Devices:
    """The three device models of one terminal, as they are persisted."""

    printer: Printer
    battery: Battery
    tamper: Tamper

    @classmethod
    def new(cls, s: DeviceSettings) -> "Devices":
        """A terminal out of the box: a full roll, a charged battery, the provisioned password."""
        return cls(Printer(s.paper_roll_mm), Battery(s.battery_full_mv * 1000, on_mains=s.on_mains_at_start), Tamper())

    @classmethod
    def from_records(cls, rows: dict[str, dict[str, Any]], s: DeviceSettings) -> "Devices":
        d = cls.new(s)
        if "printer" in rows:
            d.printer = Printer(**rows["printer"])
        if "battery" in rows:
            d.battery = Battery(**rows["battery"])
        if "tamper" in rows:
            d.tamper = Tamper(**rows["tamper"])
        return d

    @staticmethod
    def record(model: Printer | Battery | Tamper) -> dict[str, Any]:
        return asdict(model)
