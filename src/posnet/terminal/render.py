"""Receipt output drivers: plain text, a PNG of the printed roll, and ESC/POS bytes for a real printer.

Each takes slips as the terminal prints them (``Receipt``, the detail list, a
fault slip, a slip torn where the paper ran out: anything with ``lines()`` or
``text()``).

- ``text`` — what the slip says, one line per printed line.
- ``png`` — the roll as a person would see it: 58 mm paper, 384 dots wide (a
  common thermal head at 8 dots/mm), lines wrapped to the paper, a cut between
  slips and a torn edge where the paper ran out. It needs a font with Chinese
  glyphs: ``find_cjk_font`` looks for one on the machine (WenQuanYi, Noto
  CJK, Droid Sans Fallback, or ``$POSNET_FONT``); without one it falls back to
  Pillow's built-in font, which has no Chinese: those characters then come
  out as boxes, and ``RollImage.cjk`` says so.
- ``escpos`` — the bytes for an ESC/POS thermal printer (python-escpos):
  Chinese in GB18030 as Chinese printers take it, the title large, the reprint
  mark bold, a partial cut after each whole slip. ``send_escpos`` writes them
  to a network printer (``HOST:9100``) or to a device file (``/dev/usb/lp0``).
"""

from __future__ import annotations

import os
import socket
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from .receipt import REPRINT_MARK
from .slips import slip_lines

# -- text ------------------------------------------------------------------------


def text(slips: Iterable[Any]) -> str:
    return "".join(s.text() if hasattr(s, "text") else "\n".join(slip_lines(s)) + "\n" for s in slips)


def _torn(slip: Any) -> bool:
    return bool(getattr(slip, "torn", False))


# -- PNG -------------------------------------------------------------------------

ROLL_WIDTH_DOTS = 384  # 48 mm printable on a 58 mm roll, 8 dots/mm
MARGIN_DOTS = 16  # paper on each side of the printable width
FONT_SIZE_PX = 19
TITLE_SIZE_PX = 28
LINE_GAP_PX = 6
CUT_GAP_PX = 36  # paper fed past the cutter between two slips
TEAR_DEPTH_PX = 10
PAPER_RGB = (250, 249, 244)
INK_RGB = (28, 28, 32)
FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/opentype/noto/NotoSerifCJK-Regular.ttc",
    "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",
    "/usr/share/fonts/truetype/arphic/uming.ttc",
)


def find_cjk_font() -> str | None:
    """A font file with Chinese glyphs on this machine, or None."""
    env = os.environ.get("POSNET_FONT")
    for candidate in ([env] if env else []) + list(FONT_CANDIDATES):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


@dataclass
class RollImage:
    image: Any  # PIL.Image.Image
    cjk: bool  # False: no Chinese font was found; Chinese characters are boxes
    font: str  # the font file, or "Pillow built-in"

    def save(self, path: str | os.PathLike[str]) -> None:
        self.image.save(path, format="PNG", optimize=True)


def _fonts(font_path: str | None):
    from PIL import ImageFont

    path = font_path or find_cjk_font()
    if path:
        return ImageFont.truetype(path, FONT_SIZE_PX), ImageFont.truetype(path, TITLE_SIZE_PX), True, path
    return ImageFont.load_default(FONT_SIZE_PX), ImageFont.load_default(TITLE_SIZE_PX), False, "Pillow built-in"


def _wrap(line: str, font: Any, width: int) -> list[str]:
    """Break a line that does not fit the paper: after its label if it has one, as real slips are
    laid out, else where the paper ends, as the printer does."""
    if not line:
        return [""]
    label, sep, value = line.partition(": ")
    if sep and font.getlength(line) > width:
        return _wrap(label + ":", font, width) + _wrap("  " + value, font, width)
    out, current = [], ""
    for ch in line:
        if font.getlength(current + ch) > width and current:
            out.append(current)
            current = ch.lstrip() if ch == " " else ch
        else:
            current += ch
    out.append(current)
    return out


def png(slips: Iterable[Any], font_path: str | None = None) -> RollImage:
    """The printed roll of ``slips``, top to bottom."""
    from PIL import Image, ImageDraw

    body, title, cjk, font_name = _fonts(font_path)
    width = ROLL_WIDTH_DOTS + 2 * MARGIN_DOTS
    line_h = FONT_SIZE_PX + LINE_GAP_PX
    # Lay out first, to know the roll's length.
    layout: list[tuple[str, Any, bool, int]] = []  # (text, font, centred, y); text "\x00cut"/"\x00tear" marks
    y = MARGIN_DOTS
    for slip in slips:
        lines = slip_lines(slip)
        for i, line in enumerate(lines):
            is_title = i == 0 and line.strip() and not line.startswith("-")
            font = title if is_title else body
            centred = bool(is_title or line.strip() == REPRINT_MARK)
            for part in _wrap(line.strip() if centred else line, font, ROLL_WIDTH_DOTS):
                layout.append((part, font, centred, y))
                y += (TITLE_SIZE_PX + LINE_GAP_PX) if is_title else line_h
        if _torn(slip):
            layout.append(("\x00tear", None, False, y))
            y += TEAR_DEPTH_PX
            break  # the paper ran out: nothing follows on this roll
        y += CUT_GAP_PX // 2
        layout.append(("\x00cut", None, False, y))
        y += CUT_GAP_PX // 2
    height = max(y + MARGIN_DOTS, 2 * MARGIN_DOTS)
    img = Image.new("RGB", (width, height), PAPER_RGB)
    draw = ImageDraw.Draw(img)
    for part, font, centred, ly in layout:
        if part == "\x00cut":
            for x in range(0, width, 12):  # the perforation where the cutter went
                draw.line([(x, ly), (x + 6, ly)], fill=(150, 150, 150), width=1)
            continue
        if part == "\x00tear":
            points = [(x, ly + (TEAR_DEPTH_PX if (x // 8) % 2 else 0)) for x in range(0, width + 8, 8)]
            draw.polygon([(0, height), *points, (width, height)], fill=(255, 255, 255))
            continue
        x = MARGIN_DOTS
        if centred:
            x = MARGIN_DOTS + max(0, (ROLL_WIDTH_DOTS - int(font.getlength(part))) // 2)
        draw.text((x, ly), part, font=font, fill=INK_RGB)
    return RollImage(img, cjk, font_name)


# -- ESC/POS ---------------------------------------------------------------------

FS_CHINESE_ON = b"\x1c\x26"  # FS &: Chinese character mode (GB18030) on Chinese printers
ESCPOS_PORT = 9100
ESCPOS_TIMEOUT_S = 10.0


def escpos(slips: Iterable[Any]) -> bytes:
    """ESC/POS bytes that print ``slips`` on a 58 mm thermal printer, each whole slip cut."""
    from escpos.printer import Dummy

    p = Dummy()
    p.hw("INIT")
    p._raw(FS_CHINESE_ON)
    for slip in slips:
        lines = slip_lines(slip)
        for i, line in enumerate(lines):
            if i == 0 and line.strip() and not line.startswith("-"):
                p.set(align="center", bold=True, double_height=True, double_width=False)
                p.textln(line.strip())
                p.set(align="left", bold=False, normal_textsize=True)
            elif line.strip() == REPRINT_MARK:
                p.set(align="center", bold=True)
                p.textln(line.strip())
                p.set(align="left", bold=False)
            else:
                p.textln(line)
        if _torn(slip):
            break  # the printer stopped there: no cut
        p.cut(mode="PART")
    return p.output


def send_escpos(data: bytes, target: str, timeout_s: float = ESCPOS_TIMEOUT_S) -> None:
    """To ``HOST[:PORT]`` (a network printer, port 9100 by default) or to a device or file path."""
    if "/" in target or target.startswith("."):
        with open(target, "ab") as f:
            f.write(data)
        return
    host, _, port = target.partition(":")
    with socket.create_connection((host, int(port or ESCPOS_PORT)), timeout=timeout_s) as s:
        s.sendall(data)


def display_width(s: str) -> int:
    """Columns a line takes on a printer: a Chinese character takes two."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in s)
