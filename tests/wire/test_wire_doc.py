"""docs/wire.md cannot drift: its field tables are the specs, its error
examples are what the decoders raise, its hex dumps decode to the values it
annotates, and they are what the demo network sends."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from posnet.effects import Received
from posnet.wire import FrameReader, Message, decode_host, decode_terminal, encode_host, encode_terminal, frame
from posnet.wire.specs import HOST_FIELDS, TERMINAL_FIELDS
from test_wire_errors import HOST_ERRORS, TERMINAL_ERRORS

DOC = Path(__file__).resolve().parents[2] / "docs" / "wire.md"
SPECS = {"terminal": TERMINAL_FIELDS, "host": HOST_FIELDS}


def section(kind: str, name: str) -> str:
    match = re.search(rf"<!-- {kind}: {name} -->\n(.*?)<!-- /{kind} -->", DOC.read_text(encoding="utf-8"), re.DOTALL)
    assert match, f"docs/wire.md has no <!-- {kind}: {name} --> section"
    return match.group(1)


def table_rows(text: str) -> list[list[str]]:
    rows = []
    for line in text.splitlines():
        if line.startswith("| ") and not line.startswith("|---"):
            rows.append([cell.strip() for cell in line.strip().strip("|").split(" | ")])
    return rows[1:]  # without the header


def code(cell: str) -> str:
    assert cell.startswith("`") and cell.endswith("`"), cell
    return cell[1:-1]


def spec_format(kind: str, length: str, max_len: int) -> str:
    return f"{kind}{max_len}" if length == "fixed" else f"{kind}..{max_len} {length}VAR"


@pytest.mark.parametrize("leg", ["terminal", "host"])
def test_field_tables_are_the_specs(leg):
    rows = table_rows(section("fields", leg))
    documented = {int(r[0]): (r[1], r[2]) for r in rows}
    assert len(documented) == len(rows), "a field is listed twice"
    expected = {n: (spec_format(kind, length, max_len), name) for n, (kind, length, max_len, name) in SPECS[leg].items()}
    assert documented == expected
    assert all(r[3] for r in rows), "every field says what posnet uses it for"


def test_error_examples_are_what_the_decoders_raise():
    # Each case of test_wire_errors.py is decoded there and its message checked.
    raised = {message for _, _, message, _, _ in TERMINAL_ERRORS + HOST_ERRORS}
    rows = table_rows(section("errors", "examples"))
    assert rows
    for broken, message in rows:
        assert code(message) in raised, broken


def dump(leg: str) -> tuple[bytes, list[tuple[str, bytes, str]]]:
    text = section("wire-dump", leg)
    hex_block = re.search(r"```text\n(.*?)```", text, re.DOTALL)
    assert hex_block
    rows = [(r[0], bytes.fromhex(code(r[1])), code(r[2])) for r in table_rows(text)]
    return bytes.fromhex(hex_block.group(1)), rows


def single_field_bytes(leg: str, mti: str, number: str, value: str) -> bytes:
    """The bytes one field takes on the wire, length prefix included."""
    if leg == "terminal":
        return encode_terminal(Message(mti, {number: value}))[11 + 2 + 8 :]
    return encode_host(Message(mti, {number: value}))[4 + (16 if int(number) > 64 else 8) :]


@pytest.mark.parametrize("leg", ["terminal", "host"])
def test_hex_dump_decodes_to_the_annotated_fields(leg):
    data, rows = dump(leg)
    assert b"".join(b for _, b, _ in rows) == data, "the table's bytes, in order, are the dump"
    (body,) = FrameReader().feed(data)
    msg = (decode_terminal if leg == "terminal" else decode_host)(body)
    numbers = sorted(int(k) for k in msg.fields)
    seen = []
    for element, raw, value in rows:
        seen.append(element)
        if element == "length":
            assert int(value) == len(body) and raw == data[:2]
        elif element == "TPDU":
            assert value == msg.tpdu == raw.hex().upper()
        elif element == "header":
            assert value == msg.header == raw.hex().upper()
        elif element == "MTI":
            assert value == msg.mti
        elif element == "bitmap":
            secondary = [1] if any(n > 64 for n in numbers) else []
            assert value.split() == [str(n) for n in secondary + [n for n in numbers if n <= 64]]
        elif element == "bitmap 2":
            assert value.split() == [str(n) for n in numbers if n > 64]
        else:
            number = element.removeprefix("F")
            assert value == msg[number], element
            assert raw == single_field_bytes(leg, msg.mti, number, value), element
    assert seen.count("MTI") == 1
    assert [e for e in seen if e.startswith("F")] == [f"F{n}" for n in numbers], "one row per field, in order"


@pytest.fixture
def demo_sale_frames(world, card) -> dict[str, bytes]:
    """The demo network's sale: the terminal's frame to the acquirer, and the switch's to the issuer."""
    seen: dict[str, list[bytes]] = {"acquirer": [], "issuer-bank-a": []}

    class Recorder:
        def __init__(self, name, core):
            self.name, self.core = name, core

        def handle(self, event, now_ms):
            if isinstance(event, Received) and (self.name != "acquirer" or event.source.startswith("conn:")):
                seen[self.name].append(event.frame)
            return self.core.handle(event, now_ms)

    cores = {name: world.parties[name].core for name in seen}
    for name, core in cores.items():
        world.parties[name].core = Recorder(name, core)
    world.command("pos-10000001", "sign-on")
    world.command("pos-10000001", "inquiry", card=card, pin="123456")
    assert world.command("pos-10000001", "sale", card=card, pin="123456", amount_fen=8800).done.ok
    for name, core in cores.items():
        world.parties[name].core = core
    return {"terminal": seen["acquirer"][-1], "host": seen["issuer-bank-a"][-1]}


@pytest.mark.parametrize("leg", ["terminal", "host"])
def test_hex_dump_is_what_the_demo_network_sends(leg, demo_sale_frames):
    data, _ = dump(leg)
    sent = frame(demo_sale_frames[leg])
    fresh = "\n".join(textwrap.wrap(" ".join(f"{b:02X}" for b in sent), 48))
    assert data == sent, f"docs/wire.md is out of date; the {leg} dump is now:\n{fresh}"
