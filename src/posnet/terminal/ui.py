"""An interactive POS: a screen, a menu of keys, and the paper roll as it prints (`posnet pos ui`).

A plain line menu, no full-screen library: it runs in any terminal and a test
can drive it with a list of keys. It powers the terminal on as it starts (a
pending reversal goes first, an unprinted receipt is offered), and each key is
one function of the terminal's core through its driver, or one device event.
"""

from __future__ import annotations

import getpass
import os
import signal
from decimal import Decimal, InvalidOperation
from typing import Any, Callable

from ..effects import TerminalOutput
from .core import Card
from .functions import SCREEN_ENTER_PASSWORD, SCREEN_PIN, SCREEN_PROTECTION, SCREEN_SWIPE

Runner = Callable[..., TerminalOutput]  # run(function, **args) -> what the terminal showed and printed
SCREEN_WIDTH = 40  # characters of the POS screen's frame

MENU = [
    ("1", "消费 SALE"),
    ("2", "查询 INQUIRY"),
    ("3", "撤销 VOID"),
    ("4", "退货 REFUND"),
    ("5", "签到 SIGN ON"),
    ("6", "结算 SETTLE"),
    ("7", "重打印最后一笔 REPRINT LAST"),
    ("8", "重打印任意一笔 REPRINT BY VOUCHER"),
    ("9", "打印明细 DETAIL"),
    ("0", "打印总计 TOTALS"),
    ("p", "装纸 LOAD PAPER"),
    ("r", "取纸 REMOVE PAPER"),
    ("c", "充电 CHARGE"),
    ("u", "拔掉充电器 UNPLUG"),
    ("b", "电量 BATTERY LEVEL"),
    ("s", "撞击 SHOCK"),
    ("o", "开壳 OPEN CASE"),
    ("k", "解锁 UNLOCK"),
    ("x", "断电 POWER CUT"),
    ("q", "退出 QUIT"),
]


class PosUI:
    def __init__(
        self,
        run: Runner,
        terminal_id: str,
        cards: dict[str, dict[str, Any]] | None = None,
        ask: Callable[[str], str] = input,
        ask_secret: Callable[[str], str] = getpass.getpass,
        show: Callable[[str], None] = print,
        power_cut: Callable[[], None] | None = None,
    ):
        self.run = run
        self.terminal_id = terminal_id
        self.cards = cards or {}  # PAN -> {"expiry", "pin"} of the demo cards: Enter swipes the first
        self.ask, self.ask_secret, self.show = ask, ask_secret, show
        self.power_cut = power_cut or (lambda: os.kill(os.getpid(), signal.SIGKILL))

    # -- screen --------------------------------------------------------------

    def screen(self, lines: list[str]) -> None:
        self.show("┏" + "━" * SCREEN_WIDTH)
        for line in lines:
            self.show(f"┃ {line}")
        self.show("┗" + "━" * SCREEN_WIDTH)

    def roll(self, slips: list[Any]) -> None:
        for slip in slips:
            text = slip.text().rstrip("\n")
            for line in text.split("\n"):
                self.show(f"  │ {line}")
            self.show("  └─ ✂ ─" if not getattr(slip, "torn", False) else "  └~~ 缺纸 PAPER OUT ~~")

    def do(self, name: str, **args: Any) -> TerminalOutput:
        out = self.run(name, **args)
        self.screen(out.displays or ["(无显示 NOTHING SHOWN)"])
        self.roll(out.slips)
        return out

    def status_line(self) -> str:
        out = self.run("status")
        st = out.done.result if out.done else {}
        paper = "缺纸 PAPER OUT" if st.get("paper_out") else f"纸 PAPER {st.get('paper_mm', 0) / 1000:.1f}m"
        power = f"电池 {st.get('battery_mv', 0) / 1000:.2f}V {st.get('battery_percent', 0)}%" + (" ⚡" if st.get("on_mains") else "")
        state = "保护状态 PROTECTION" if st.get("locked") else ("已签到 SIGNED ON" if st.get("signed_on") else "未签到")
        return f"[{paper} | {power} | {state}]"

    # -- input ---------------------------------------------------------------

    def _amount_fen(self) -> int | None:
        text = self.ask("金额 AMOUNT (元 yuan): ").strip()
        try:
            fen = Decimal(text) * 100
        except InvalidOperation:
            self.screen(["金额无效 INVALID AMOUNT"])
            return None
        if fen != fen.to_integral_value() or fen <= 0:
            self.screen(["金额无效 INVALID AMOUNT"])
            return None
        return int(fen)

    def _card(self) -> tuple[Card, str | None] | None:
        self.screen([SCREEN_SWIPE])
        pan = self.ask("卡号 CARD (Enter: the demo card): ").strip()
        if not pan and self.cards:
            pan = next(iter(self.cards))
        known = self.cards.get(pan, {})
        expiry = known.get("expiry") or self.ask("有效期 EXPIRY (YYMM): ").strip()
        if not (pan.isdigit() and 13 <= len(pan) <= 19 and len(expiry) == 4):
            self.screen(["读卡失败 CARD READ ERROR"])
            return None
        self.screen([SCREEN_PIN])
        pin = self.ask_secret("密码 PIN (Enter: no PIN): ").strip() or None
        return Card(pan, expiry), pin

    # -- the loop ------------------------------------------------------------

    def key(self, k: str) -> bool:
        """One key of the menu; False to leave."""
        if k == "q":
            return False
        if k in ("1", "2", "3", "4") and self.run("status").done.result.get("locked"):
            # Protection mode: the terminal says so before asking for a card.
            self.screen([SCREEN_PROTECTION, SCREEN_ENTER_PASSWORD])
            return True
        if k in ("1", "2", "4"):
            amount = None
            if k != "2":
                amount = self._amount_fen()
                if amount is None:
                    return True
            got = self._card()
            if got is None:
                return True
            card, pin = got
            if k == "1":
                self.do("sale", card=card, pin=pin, amount_fen=amount)
            elif k == "2":
                self.do("inquiry", card=card, pin=pin)
            else:
                ref = self.ask("原参考号 ORIGINAL REFERENCE NO.: ").strip()
                date = self.ask("原交易日期 ORIGINAL DATE (MMDD): ").strip()
                self.do("refund", card=card, pin=pin, amount_fen=amount, reference_no=ref, date_mmdd=date)
        elif k == "3":
            voucher = self.ask("原凭证号 ORIGINAL VOUCHER NO.: ").strip()
            if voucher.isdigit():
                self.do("void", voucher_no=int(voucher))
        elif k == "8":
            voucher = self.ask("凭证号 VOUCHER NO.: ").strip()
            if voucher.isdigit():
                self.do("reprint", voucher_no=int(voucher))
        elif k == "b":
            level = self.ask("电压 VOLTS (e.g. 7.2): ").strip()
            try:
                self.do("battery", level_mv=int(Decimal(level.rstrip("vV")) * 1000))
            except InvalidOperation:
                self.screen(["电压无效 INVALID LEVEL"])
        elif k == "k":
            self.do("unlock", password=self.ask_secret("保护密码 PROTECTION PASSWORD: "))
        elif k == "x":
            self.screen(["断电 POWER CUT"])
            self.power_cut()
        else:
            simple = {
                "5": ("sign-on", {}),
                "6": ("settle", {}),
                "7": ("reprint", {}),
                "9": ("detail", {}),
                "0": ("totals", {}),
                "p": ("load-paper", {}),
                "r": ("remove-paper", {}),
                "c": ("battery", {"mains": True}),
                "u": ("battery", {"mains": False}),
                "s": ("shock", {}),
                "o": ("open-case", {}),
            }
            if k not in simple:
                self.screen(["无此功能 NO SUCH KEY"])
                return True
            name, args = simple[k]
            self.do(name, **args)
        return True

    def main(self) -> int:
        self.do("power-on")
        while True:
            self.show(f"POSNET {self.terminal_id} {self.status_line()}")
            for i in range(0, len(MENU), 4):
                self.show("  ".join(f"{k} {label}" for k, label in MENU[i : i + 4]))
            try:
                k = self.ask("> ").strip().lower()
            except EOFError:
                return 0
            if not self.key(k):
                return 0


def run_ui(net, terminal_id: str | None) -> int:
    """`posnet pos ui`: the interactive terminal over the network of ``net``."""
    from ..runtime.pos import TerminalDriver

    driver = TerminalDriver(net, terminal_id)
    cards = {c["pan"]: {"expiry": str(c["expiry"]), "pin": str(c.get("pin", ""))} for c in net.cards()}
    try:
        return PosUI(driver.run, driver.core.config.terminal_id, cards).main()
    finally:
        driver.close()
