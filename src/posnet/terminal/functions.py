"""The terminal as a device: what its paper, battery and tamper switches allow, and the functions
that need no host — reprints, the detail list, the totals, tamper, unlock, loading a master key.

``DeviceFunctions`` is a part of ``Terminal`` (terminal/core.py): every command passes through
``_device_gate`` first, and every slip reaches the paper through ``_print_receipt`` or
``_print_slip``. The rules (DOMAIN.md §3):

- An approval is in the journal before printing starts; a print that fails leaves a print job
  (table ``print_job``, by voucher) and the terminal offers the reprint after paper is loaded,
  after charging, and at power-up. A job is closed only when the driver says the printer is
  done (``Command("printed")``), so a power cut while printing also leaves it open.
- Below the protection voltage the terminal neither starts an online function nor prints.
- A shock or an opened case locks the terminal (保护状态); an opened case erases every key.
  The protection password unlocks it; wrong ones count, and too many lock it out for a while.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .. import timefmt
from ..effects import CancelTimer, Command, Delete, Display, Done, Effect, Print, Put, mask_pan
from ..security import KeyCheckError, SecurityError
from .devices import DeviceSettings, Devices
from .receipt import yuan
from .slips import TYPE_LETTER, DetailSlip, PartialSlip, TotalsSlip, slip_lines

if TYPE_CHECKING:  # pragma: no cover
    from .core import TerminalConfig

# What the screen shows (the words of a real POS, then English).
SCREEN_SWIPE = "请刷卡 SWIPE CARD"
SCREEN_PIN = "请输入密码 ENTER PIN"
SCREEN_APPROVED = "交易成功 APPROVED"
SCREEN_AUTO_REVERSAL = "自动冲正成功 AUTO REVERSAL DONE"
SCREEN_PAPER_OUT = "缺纸 PAPER OUT"
SCREEN_PAPER_OUT_REPRINT = "缺纸 PAPER OUT: 请装纸后重打印 LOAD PAPER, THEN REPRINT"
SCREEN_BATTERY_WARNING = "电量低 BATTERY LOW"
SCREEN_BATTERY_CHARGE = "电量不足,请充电 BATTERY LOW, PLEASE CHARGE"
SCREEN_NOT_PRINTED = "签购单未打印 RECEIPT NOT PRINTED"
SCREEN_PROTECTION = "保护状态 PROTECTION MODE"
SCREEN_ENTER_PASSWORD = "请输入保护密码 ENTER PROTECTION PASSWORD"
SCREEN_KEYS_ERASED = "密钥已清除,请联系服务商灌装主密钥 KEYS ERASED: THE SERVICE PROVIDER MUST INJECT A NEW MASTER KEY"
SCREEN_NO_TMK = "无主密钥,请联系服务商 NO MASTER KEY: CALL THE SERVICE PROVIDER"

DEVICE_FUNCTIONS = (
    "power-on",
    "printed",
    "status",
    "load-paper",
    "remove-paper",
    "battery",
    "shock",
    "open-case",
    "unlock",
    "load-tmk",
    "reprint",
    "detail",
    "totals",
)
# What a locked terminal still does: events of the device itself, and the password.
WHILE_LOCKED = ("power-on", "printed", "status", "load-paper", "remove-paper", "battery", "shock", "open-case", "unlock")
PRINTING_FUNCTIONS = ("reprint", "totals")  # refused below the protection voltage; the detail list is also shown on screen
REASON_TEXT = {"paper": SCREEN_PAPER_OUT_REPRINT, "battery": f"{SCREEN_BATTERY_CHARGE}; {SCREEN_NOT_PRINTED}"}
NO_KEYS = {"tmk": None, "pik": None, "mak": None, "tdk": None, "signed_on": False, "sign_on_again": False}


class DeviceFunctions:
    """Mixed into ``Terminal``; uses its journal, keys, reversals and receipts."""

    config: "TerminalConfig"
    journal: dict[str, dict[str, Any]]
    keys: dict[str, Any]
    last_voucher: str | None

    # -- state ----------------------------------------------------------------

    @property
    def device_settings(self) -> DeviceSettings:
        return getattr(self.config, "device", None) or DeviceSettings()

    @property
    def devices(self) -> Devices:
        d = self.__dict__.get("_devices")
        if d is None:
            d = self.__dict__["_devices"] = Devices.new(self.device_settings)
        return d

    @property
    def print_jobs(self) -> dict[str, dict[str, Any]]:
        """Receipts that must still come out of the printer, by voucher."""
        return self.__dict__.setdefault("_print_jobs", {})

    def _restore_devices(self, tables: dict[str, dict[str, dict[str, Any]]]) -> list[Effect]:
        rows = tables.get("device", {})
        self.__dict__["_devices"] = Devices.from_records(rows, self.device_settings)
        self.__dict__["_print_jobs"] = {}
        effects: list[Effect] = [] if rows else self._put_devices()
        for voucher, job in sorted(tables.get("print_job", {}).items()):
            if voucher not in self.journal:  # the batch was settled since: nothing to reprint
                effects.append(Delete("print_job", voucher))
                continue
            job = dict(job)
            if job["printing"]:
                # The power went while these were printing: none of them is known to be on paper.
                job.update(printing=[], reason="power")
                effects.append(Put("print_job", voucher, job))
            self.print_jobs[voucher] = job
        return effects

    def _put_devices(self) -> list[Effect]:
        d = self.devices
        return [Put("device", name, Devices.record(getattr(d, name))) for name in ("printer", "battery", "tamper")]

    def unprinted(self) -> list[str]:
        """Vouchers whose receipt is not (wholly) on paper, oldest first."""
        return sorted(v for v, job in self.print_jobs.items() if not job["printing"] and v in self.journal)

    def device_status(self, now_ms: int) -> dict[str, Any]:
        s, d = self.device_settings, self.devices
        return {
            "paper_mm": d.printer.paper_mm,
            "paper_out": not d.printer.has_paper,
            "battery_mv": d.battery.voltage_mv(s, now_ms),
            "battery_percent": d.battery.percent(s, now_ms),
            "on_mains": d.battery.on_mains,
            "battery_low": d.battery.low(s, now_ms),
            "low_voltage_protection": d.battery.protected(s, now_ms),
            "locked": d.tamper.locked,
            "lock_reason": d.tamper.reason,
            "keys_erased": d.tamper.keys_erased,
            "has_tmk": bool(self.keys.get("tmk")),
            "signed_on": bool(self.keys.get("signed_on")),
            "unprinted": self.unprinted(),
            "pending_reversals": sorted(getattr(self, "reversals", {})),
        }

    # -- the gate every command passes -----------------------------------------

    def _device_gate(self, cmd: Command, now_ms: int) -> list[Effect]:
        if cmd.name in DEVICE_FUNCTIONS:
            return self._device_function(cmd, now_ms)
        if cmd.name not in self.ONLINE or self.busy:  # type: ignore[attr-defined]
            return self._command(cmd, now_ms)  # type: ignore[attr-defined]
        refused = self._refuse_online(now_ms)
        if refused:
            return refused
        s, battery = self.device_settings, self.devices.battery
        battery.drain(s, s.online_drain_uv)
        effects: list[Effect] = self._put_devices()
        if battery.low(s, now_ms):
            effects.append(Display(SCREEN_BATTERY_WARNING))
        return effects + self._command(cmd, now_ms)  # type: ignore[attr-defined]

    def _refuse_online(self, now_ms: int) -> list[Effect]:
        if self.devices.tamper.locked:
            return self._refuse_locked()
        if not self.keys.get("tmk"):
            return [Display(SCREEN_NO_TMK), Done(False, result={"error": "no master key"})]
        if self.devices.battery.protected(self.device_settings, now_ms):
            return [Display(SCREEN_BATTERY_CHARGE), Done(False, result={"error": "battery low"})]
        return []

    def _refuse_locked(self) -> list[Effect]:
        t = self.devices.tamper
        why = "机壳被打开 CASE OPENED" if t.reason == "case opened" else "受到撞击 SHOCK"
        return [
            Display(f"{SCREEN_PROTECTION}: {why}; {SCREEN_ENTER_PASSWORD}"),
            Done(False, result={"error": "protection", "reason": t.reason}),
        ]

    def _device_function(self, cmd: Command, now_ms: int) -> list[Effect]:
        if self.devices.tamper.locked and cmd.name not in WHILE_LOCKED:
            return self._refuse_locked()
        if cmd.name in PRINTING_FUNCTIONS and self.devices.battery.protected(self.device_settings, now_ms):
            return [Display(SCREEN_BATTERY_CHARGE), Done(False, result={"error": "battery low"})]
        handler = getattr(self, "_fn_" + cmd.name.replace("-", "_"))
        return handler(cmd.args, now_ms)

    # -- paper -----------------------------------------------------------------

    def _put_on_paper(self, slip: Any, now_ms: int) -> tuple[list[Effect], str | None]:
        """Print one slip line by line while there is paper and voltage; (effects, why it stopped)."""
        s, d = self.device_settings, self.devices
        lines = slip_lines(slip)
        printed, reason = 0, None
        for _ in lines:
            if d.battery.protected(s, now_ms):
                reason = "battery"
                break
            if not d.printer.feed_line(s):
                reason = "paper"
                break
            d.battery.drain(s, s.line_drain_uv)
            printed += 1
        if reason is None:
            d.printer.cut(s)
            return [Print(slip)], None
        return ([Print(PartialSlip(slip, printed, reason))] if printed else []), reason

    def _print_slip(self, slip: Any, now_ms: int) -> list[Effect]:
        """A slip that is not a receipt (fault slip, detail list, totals, settlement): printed if it can be."""
        out, reason = self._put_on_paper(slip, now_ms)
        effects = self._put_devices() + out
        if reason is not None:
            effects.append(Display(SCREEN_PAPER_OUT if reason == "paper" else SCREEN_BATTERY_CHARGE))
        return effects

    def _print_receipt(self, voucher: str, now_ms: int, reprint: bool = False) -> list[Effect]:
        """The receipt's copies of a journal entry, with a print job that stays open until the
        driver reports the printer done, or until a reprint succeeds if this one could not finish."""
        job = self.print_jobs.get(voucher)
        copies = list(self.config.print_copies)
        if job is not None and not job["printing"]:
            copies = list(job["copies"])  # a reprint of what did not come out
        out: list[Effect] = []
        printing: list[str] = []
        reason = None
        for copy in copies:
            effects, reason = self._put_on_paper(self.receipt(voucher, copy, reprint=reprint), now_ms)  # type: ignore[attr-defined]
            out += effects
            if reason is not None:
                break
            printing.append(copy)
        job = {"voucher_no": voucher, "copies": copies, "printing": printing, "reason": reason, "created_ms": now_ms}
        self.print_jobs[voucher] = job
        effects = [Put("print_job", voucher, job), *self._put_devices(), *out]
        if reason is not None:
            effects.append(Display(REASON_TEXT[reason]))
        return effects

    def _offer_reprint(self) -> list[Effect]:
        waiting = self.unprinted()
        if not waiting:
            return []
        return [Display(f"{SCREEN_NOT_PRINTED}: 凭证号 VOUCHER {', '.join(waiting)}; 请重打印 PLEASE REPRINT")]

    def _fn_printed(self, args: dict[str, Any], now_ms: int) -> list[Effect]:
        """The driver: the printer has put out what it was given."""
        effects: list[Effect] = []
        for voucher, job in list(self.print_jobs.items()):
            if not job["printing"]:
                continue
            left = [c for c in job["copies"] if c not in job["printing"]]
            if left:
                job.update(copies=left, printing=[])
                effects.append(Put("print_job", voucher, job))
            else:
                del self.print_jobs[voucher]
                effects.append(Delete("print_job", voucher))
        return effects

    def _fn_load_paper(self, args: dict[str, Any], now_ms: int) -> list[Effect]:
        length = int(args.get("length_mm") or self.device_settings.paper_roll_mm)
        if length <= 0:
            return [Display("纸长无效 INVALID PAPER LENGTH"), Done(False, result={"error": "invalid length"})]
        self.devices.printer.load(length)
        return [
            *self._put_devices(),
            Display(f"已装纸 PAPER LOADED ({length / 1000:.1f} m)"),
            *self._offer_reprint(),
            Done(True, result={"paper_mm": length, "unprinted": self.unprinted()}),
        ]

    def _fn_remove_paper(self, args: dict[str, Any], now_ms: int) -> list[Effect]:
        self.devices.printer.remove()
        return [*self._put_devices(), Display(SCREEN_PAPER_OUT), Done(True, result={"paper_mm": 0})]

    # -- battery ---------------------------------------------------------------

    def _fn_battery(self, args: dict[str, Any], now_ms: int) -> list[Effect]:
        s, battery = self.device_settings, self.devices.battery
        if args.get("level_mv") is not None:
            battery.set_level(s, int(args["level_mv"]), now_ms)
        if args.get("mains") is True:
            battery.plug(now_ms)
        elif args.get("mains") is False:
            battery.unplug(s, now_ms)
        status = self.device_status(now_ms)
        text = f"电池 BATTERY {status['battery_mv'] / 1000:.2f} V {status['battery_percent']}%"
        effects: list[Effect] = [*self._put_devices()]
        if battery.on_mains:
            effects.append(Display(f"{text} 充电中 CHARGING"))
            effects += self._offer_reprint()
        elif battery.protected(s, now_ms):
            effects.append(Display(f"{text}; {SCREEN_BATTERY_CHARGE}"))
        elif battery.low(s, now_ms):
            effects.append(Display(f"{text}; {SCREEN_BATTERY_WARNING}"))
        else:
            effects.append(Display(text))
            effects += self._offer_reprint()
        return effects + [Done(True, result=status)]

    # -- tamper ----------------------------------------------------------------

    def _trip(self, reason: str, now_ms: int) -> list[Effect]:
        s, t = self.device_settings, self.devices.tamper
        if t.password_hash is None:
            t.password_hash = s.password_hash()  # provisioning: the terminal keeps the salted hash only
        t.trip(reason, now_ms)
        effects: list[Effect] = []
        ex = getattr(self, "_exchange", None)
        if ex is not None:
            # The function in flight is abandoned; a reversal record it wrote stays, to be sent later.
            from .core import RESPONSE_TIMER

            self._exchange = None
            effects += [CancelTimer(RESPONSE_TIMER)]
        if reason == "case opened":
            self.keys = dict(NO_KEYS)
            effects.append(Put("state", "keys", dict(self.keys)))
            why = f"机壳被打开 CASE OPENED; {SCREEN_KEYS_ERASED}"
        else:
            why = "受到撞击 SHOCK"
        return [
            *self._put_devices(),
            *effects,
            Display(f"{SCREEN_PROTECTION}: {why}; {SCREEN_ENTER_PASSWORD}"),
            Done(True if ex is None else False, result={"locked": True, "reason": reason, "keys_erased": t.keys_erased}),
        ]

    def _fn_shock(self, args: dict[str, Any], now_ms: int) -> list[Effect]:
        return self._trip("shock", now_ms)

    def _fn_open_case(self, args: dict[str, Any], now_ms: int) -> list[Effect]:
        return self._trip("case opened", now_ms)

    def _fn_unlock(self, args: dict[str, Any], now_ms: int) -> list[Effect]:
        s, t = self.device_settings, self.devices.tamper
        if not t.locked:
            return [Display("终端未锁定 NOT LOCKED"), Done(True, result={"locked": False})]
        outcome = t.try_password(str(args.get("password", "")), s, now_ms)
        effects: list[Effect] = self._put_devices()
        if outcome == "unlocked":
            effects.append(Display("解锁成功 UNLOCKED"))
            if t.keys_erased or not self.keys.get("tmk"):
                effects.append(Display(SCREEN_KEYS_ERASED))
            return effects + [Done(True, result={"locked": False, "keys_erased": t.keys_erased})]
        if outcome == "wrong":
            left = s.password_tries_max - t.wrong_tries
            effects.append(Display(f"密码错 WRONG PASSWORD: 还可尝试 {left} 次 {left} TRIES LEFT"))
        elif outcome == "locked out":
            minutes = max(1, -(-(t.lockout_until_ms - now_ms) // 60_000))
            effects.append(Display(f"密码错误次数过多,请{minutes}分钟后再试 TOO MANY WRONG PASSWORDS: TRY AGAIN IN {minutes} MIN"))
        else:
            effects.append(Display("未设置保护密码,请联系服务商 NO PROTECTION PASSWORD: CALL THE SERVICE PROVIDER"))
        return effects + [Done(False, result={"error": outcome.replace(" ", "-"), "locked": True})]

    def _fn_load_tmk(self, args: dict[str, Any], now_ms: int) -> list[Effect]:
        """The service provider's key-loading device puts a TMK, under its transport key, into the terminal."""
        try:
            tmk = self.hsm.import_key(args["tk"], bytes.fromhex(args["tmk_under_tk"]), bytes.fromhex(args["kcv"]))  # type: ignore[attr-defined]
        except (KeyCheckError, SecurityError, ValueError, KeyError) as e:
            return [Display(f"主密钥校验错 MASTER KEY CHECK FAILED: {e}"), Done(False, result={"error": "key check"})]
        self.keys = {**NO_KEYS, "tmk": tmk}
        self.devices.tamper.keys_erased = False
        kcv = args["kcv"].upper()
        return [
            Put("state", "keys", dict(self.keys)),
            *self._put_devices(),
            Display(f"主密钥灌装成功 MASTER KEY LOADED  KCV {kcv}; 请签到 PLEASE SIGN ON"),
            Done(True, result={"kcv": kcv}),
        ]

    # -- power -----------------------------------------------------------------

    def _fn_power_on(self, args: dict[str, Any], now_ms: int) -> list[Effect]:
        """开机: what the store says was in flight comes first — a reversal, an unprinted receipt."""
        effects: list[Effect] = [Display(f"POSNET {self.config.terminal_id} 欢迎使用 WELCOME")]
        if self.devices.tamper.locked:
            return effects + self._refuse_locked()
        s, battery = self.device_settings, self.devices.battery
        if battery.protected(s, now_ms):
            effects.append(Display(SCREEN_BATTERY_CHARGE))
        elif battery.low(s, now_ms):
            effects.append(Display(SCREEN_BATTERY_WARNING))
        effects += self._offer_reprint()
        if getattr(self, "reversals", None) and not self._refuse_online(now_ms):
            return effects + [Display("自动冲正 AUTO REVERSAL")] + self._device_gate(Command("send-reversal"), now_ms)
        return effects + [Done(True, result={"unprinted": self.unprinted(), "reversal": "pending" if getattr(self, "reversals", None) else "none"})]

    def _fn_status(self, args: dict[str, Any], now_ms: int) -> list[Effect]:
        st = self.device_status(now_ms)
        lines = [
            "纸 PAPER " + ("缺纸 OUT" if st["paper_out"] else f"{st['paper_mm'] / 1000:.1f} m"),
            f"电池 BATTERY {st['battery_mv'] / 1000:.2f} V {st['battery_percent']}%{' 充电中 CHARGING' if st['on_mains'] else ''}",
        ]
        if st["locked"]:
            lines.append(f"{SCREEN_PROTECTION} ({st['lock_reason']})")
        if not st["has_tmk"]:
            lines.append(SCREEN_NO_TMK)
        lines.append("已签到 SIGNED ON" if st["signed_on"] else "未签到 NOT SIGNED ON")
        return [*(Display(t) for t in lines), *self._offer_reprint(), Done(True, result=st)]

    # -- reprints and lists ----------------------------------------------------

    def _fn_reprint(self, args: dict[str, Any], now_ms: int) -> list[Effect]:
        """重打印最后一笔 (no voucher) or 重打印任意一笔 (by voucher number)."""
        if args.get("voucher_no") is not None:
            voucher = f"{int(args['voucher_no']):06d}"
            if voucher not in self.journal:
                return [Display(f"无此交易 NO SUCH VOUCHER {voucher}"), Done(False, result={"error": "no such voucher"})]
        else:
            voucher = self.last_voucher
            if voucher is None or voucher not in self.journal:
                return [Display("无交易 NO TRANSACTION"), Done(False, result={"error": "no transaction"})]
        effects = self._print_receipt(voucher, now_ms, reprint=True)
        ok = self.print_jobs[voucher]["reason"] is None
        return [Display(f"重打印 REPRINT 凭证号 VOUCHER {voucher}"), *effects, Done(ok, result={"voucher_no": voucher, "printed": ok})]

    def _header(self, now_ms: int) -> dict[str, str]:
        return {
            "merchant_name": self.config.merchant_name,
            "merchant_id": self.config.merchant_id,
            "terminal_id": self.config.terminal_id,
            "batch_no": self.counters["batch_no"],  # type: ignore[attr-defined]
            "datetime": timefmt.stamp(now_ms),
        }

    def _fn_detail(self, args: dict[str, Any], now_ms: int) -> list[Effect]:
        """打印明细: the batch's transactions. The detail list is the terminal's truth."""
        entries = sorted(self.journal.values(), key=lambda e: e["voucher_no"])
        slip = DetailSlip(entries=tuple(entries), **self._header(now_ms))
        # On the screen always (查询明细); on paper when the voltage allows (打印明细).
        screen = [Display(f"{e['voucher_no']} {TYPE_LETTER.get(e['kind'], '?')} {yuan(e['amount_fen'])} {mask_pan(e['pan'])}") for e in entries]
        if self.devices.battery.protected(self.device_settings, now_ms):
            effects: list[Effect] = [Display(SCREEN_BATTERY_CHARGE)]
        else:
            effects = self._print_slip(slip, now_ms)
        rows = [
            {k: e.get(k) for k in ("voucher_no", "kind", "amount_fen", "auth_code", "reference_no", "voided")}
            | {"card": mask_pan(e["pan"])}
            for e in entries
        ]
        printed = self._printed(effects, slip)
        return [*screen, *effects, Done(True, result={"entries": rows, "printed": printed})]

    def _fn_totals(self, args: dict[str, Any], now_ms: int) -> list[Effect]:
        slip = TotalsSlip.of(self.journal, **self._header(now_ms))
        effects = self._print_slip(slip, now_ms)
        totals = {kind: {"count": n, "amount_fen": a} for kind, n, a in slip.totals}
        return [*effects, Done(self._printed(effects, slip), result={"totals": totals})]

    @staticmethod
    def _printed(effects: list[Effect], slip: Any) -> bool:
        return any(isinstance(e, Print) and e.slip is slip for e in effects)
