"""The receipt's three output drivers: text, the PNG of the roll, ESC/POS bytes."""

import socket
import threading

import pytest

from posnet.terminal import render
from posnet.terminal.receipt import CARDHOLDER_COPY, MERCHANT_COPY, Receipt
from posnet.terminal.slips import PartialSlip


def receipt(copy=MERCHANT_COPY, reprint=False):
    return Receipt(
        copy=copy, merchant_name="posnet 测试商户", merchant_id="898310148160001", terminal_id="10000001", operator="01",
        issuer="01020000", acquirer="48020000", pan="6222020000000001", entry_mode="021", tx_type="sale", expiry="3012",
        batch_no="000001", voucher_no="000002", auth_code="000001", datetime="2026/11/24 10:00:00",
        reference_no="000000000002", amount_fen=12345, reprint=reprint,
    )


GS_V = b"\x1dV"  # GS V: cut the paper


def test_the_escpos_stream_carries_the_slips_text_in_gb18030_and_a_cut_after_each_slip():
    data = render.escpos([receipt(reprint=True), receipt(CARDHOLDER_COPY, reprint=True)])
    assert data.startswith(b"\x1b@")  # ESC @: initialise the printer
    for text in ("商户存根 MERCHANT COPY", "持卡人存根 CARDHOLDER COPY", "RMB 123.45", "622202******0001 /S", "****重打印 REPRINT****"):
        assert text.encode("gb18030") in data, text
    assert data.count(GS_V) == 2, "each slip is cut"
    assert data.rfind(GS_V) > data.rfind("持卡人存根 CARDHOLDER COPY".encode("gb18030")), "the last slip is cut after its text"


def test_a_slip_torn_where_the_paper_ended_is_not_cut():
    data = render.escpos([receipt(), PartialSlip(receipt(CARDHOLDER_COPY), 5, "paper")])
    assert data.count(GS_V) == 1
    assert "持卡人存根 CARDHOLDER COPY".encode("gb18030") in data and b"RMB 123.45" in data  # the whole first slip
    assert data.count(b"RMB 123.45") == 1, "the torn slip stopped before its amount"


def test_send_escpos_to_a_network_printer_on_its_port():
    server = socket.create_server(("127.0.0.1", 0))
    got = bytearray()

    def accept():
        conn, _ = server.accept()
        with conn:
            while chunk := conn.recv(4096):
                got.extend(chunk)

    t = threading.Thread(target=accept)
    t.start()
    data = render.escpos([receipt()])
    render.send_escpos(data, f"127.0.0.1:{server.getsockname()[1]}")
    t.join(5)
    server.close()
    assert bytes(got) == data


def test_the_png_of_the_roll_renders_ink_on_paper():
    roll = render.png([receipt(), PartialSlip(receipt(CARDHOLDER_COPY), 8, "paper")])
    width, height = roll.image.size
    assert width == render.ROLL_WIDTH_DOTS + 2 * render.MARGIN_DOTS and height > 200
    grey = roll.image.convert("L")
    dark = sum(grey.histogram()[:100])  # pixels darker than 100 of 255
    assert dark > 2000, "text was drawn"
    assert grey.getpixel((0, 0)) > 200, "on white paper"


def test_the_png_uses_a_chinese_font_when_the_machine_has_one():
    font = render.find_cjk_font()
    if font is None:
        pytest.skip("no font with Chinese glyphs on this machine (apt-get install fonts-wqy-microhei)")
    roll = render.png([receipt()])
    assert roll.cjk and roll.font == font


def test_without_a_chinese_font_the_built_in_font_still_draws(monkeypatch):
    monkeypatch.setattr(render, "FONT_CANDIDATES", ())
    monkeypatch.delenv("POSNET_FONT", raising=False)
    roll = render.png([receipt()])
    assert roll.cjk is False and roll.font == "Pillow built-in"
    assert sum(roll.image.convert("L").histogram()[:100]) > 500


def test_the_text_driver_is_what_the_slip_says():
    assert render.text([receipt()]) == receipt().text()
