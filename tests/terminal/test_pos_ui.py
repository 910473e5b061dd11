"""The interactive terminal, driven by keys: a sale, paper out and a reprint, a shock and the password."""

from posnet.terminal.ui import PosUI

POS = "pos-10000001"


def test_the_line_menu_shows_the_screens_and_the_roll(world):
    keys = iter(["5", "1", "12.34", "", "r", "1", "5.00", "", "p", "7", "s", "1", "k", "q"])
    secrets = iter(["123456", "123456", "147258"])
    shown: list[str] = []
    ui = PosUI(
        lambda name, **args: world.command(POS, name, **args),
        "10000001",
        {"6222020000000001": {"expiry": "3012"}},
        ask=lambda prompt: next(keys),
        ask_secret=lambda prompt: next(secrets),
        show=shown.append,
    )
    assert ui.main() == 0
    screen = "\n".join(shown)
    for text in ("请刷卡 SWIPE CARD", "请输入密码 ENTER PIN", "交易成功 APPROVED", "缺纸 PAPER OUT",
                 "签购单未打印 RECEIPT NOT PRINTED: 凭证号 VOUCHER 000003", "****重打印 REPRINT****", "保护状态 PROTECTION MODE",
                 "解锁成功 UNLOCKED"):
        assert text in screen, text
    assert screen.count("  │ 商户存根 MERCHANT COPY") == 2, "the first sale's slip and the reprint"
    after_shock = screen[screen.index("受到撞击 SHOCK"):]
    assert "请刷卡 SWIPE CARD" not in after_shock, "a locked terminal asks for no card"
    assert "┃ 请输入保护密码 ENTER PROTECTION PASSWORD" in after_shock
    assert world.parties[POS].core.journal.keys() == {"000002", "000003"}, "the sale tried while locked was refused"
