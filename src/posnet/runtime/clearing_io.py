"""Clearing files on disk: the boxes members exchange them in (posnet.clearing_files).

Every box is a folder under the network's clearing folder (``[clearing] folder``,
default ``data/clearing``): ``to-switch/``, ``to-issuer-<name>/``, ``reports/``.
A file is written under a temporary name and renamed, so a reader never sees
half of one. A party reads its own box: each file is handed to its core, the
records it caused are committed and the files it caused are written, and only
then is the file moved to ``done/`` in its box. A file in ``done/`` is never
written again, so a sender publishing again after a restart repeats nothing.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import Any

from .. import clearing_files
from ..clearing_files import CLEARING_FILE
from ..effects import Command, Publish

log = logging.getLogger("posnet.runtime")

POLL_INTERVAL_S = 1.0
DONE = "done"


class ClearingBoxes:
    def __init__(self, root: Path):
        self.root = Path(root)

    def publish(self, e: Publish) -> None:
        box = self.root / e.box
        if (box / e.name).exists() or (box / DONE / e.name).exists():
            return
        box.mkdir(parents=True, exist_ok=True)
        tmp = box / f".{e.name}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(e.text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, box / e.name)

    def waiting(self, box: str) -> list[Path]:
        d = self.root / box
        if not d.is_dir():
            return []
        return sorted(p for p in d.iterdir() if p.is_file() and not p.name.startswith("."))

    def take_next(self, node: Any, box: str) -> bool:
        """Hand the first file waiting in ``box`` to the node's core (its records committed, the files
        it caused written), then move it to ``done/``. False when none waits."""
        files = self.waiting(box)
        if not files:
            return False
        path = files[0]
        text = path.read_text(encoding="utf-8")
        node.handle_now(Command(CLEARING_FILE, {"box": box, "name": path.name, "text": text}))
        done = path.parent / DONE
        done.mkdir(exist_ok=True)
        os.replace(path, done / path.name)
        return True

    async def watch(self, node: Any, box: str, interval_s: float = POLL_INTERVAL_S) -> None:
        """A file at a time, the party's other inputs served between two; the box looked at again at
        once while files wait (a cut-off's slices come one after another), every ``interval_s`` when empty."""
        while True:
            try:
                took = self.take_next(node, box)
            except Exception:  # a bad file must not stop the party; the core names what is wrong
                log.exception("%s: reading clearing box %s", node.name, box)
                took = False
            await asyncio.sleep(0 if took else interval_s)


# -- `posnet clearing` ---------------------------------------------------------------------------


def report_days(root: Path) -> list[str]:
    d = Path(root) / "reports"
    if not d.is_dir():
        return []
    return sorted({p.stem.rsplit("_", 1)[-1] for p in d.iterdir() if p.suffix in (".txt", ".csv")})


def cmd_clearing(args) -> int:
    import json
    import sys

    from .. import config as cfg

    net = cfg.load(args.config)
    root = net.clearing_dir
    if args.operation == "status":
        boxes = ClearingBoxes(root)
        names = [clearing_files.SWITCH_BOX, *(clearing_files.issuer_box(i["name"]) for i in net.issuers)]
        status = {
            b: {"waiting": [p.name for p in boxes.waiting(b)], "done": len(list((root / b / DONE).glob("*"))) if (root / b / DONE).is_dir() else 0}
            for b in names
        }
        status["reports"] = report_days(root)
        if args.json:
            print(json.dumps(status, indent=1))
            return 0
        print(f"clearing folder {root}")
        for b in names:
            print(f"  {b:<22} {len(status[b]['waiting'])} waiting, {status[b]['done']} done")
        print(f"  reports: {', '.join(status['reports']) or 'none yet (the first comes at the cut-off)'}")
        return 0
    days = report_days(root)
    day = args.day or (days[-1] if days else None)
    if day is None or day not in days:
        print(f"posnet: no reports for {day or 'any day'} in {root / 'reports'}; the switch writes them at the cut-off"
              f" ([clearing] cutoff), the issuers an hour later", file=sys.stderr)
        return 1
    suffix = ".csv" if args.csv else ".txt"
    for p in sorted((root / "reports").glob(f"*_{day}{suffix}")):
        if args.csv:
            print(f"# {p.name}")
        sys.stdout.write(p.read_text(encoding="utf-8"))
        print()
    return 0


def register_cli(sub, with_config) -> None:
    sp = with_config(sub.add_parser("clearing", help="clearing between members: files, settlement and reconciliation reports"))
    ops = sp.add_subparsers(dest="operation", required=True)
    f = ops.add_parser("report", help="the day's settlement report (switch) and reconciliation reports (issuers)")
    f.add_argument("--day", help="YYYYMMDD (default: the newest day with reports)")
    f.add_argument("--csv", action="store_true", help="the CSV files instead of the text")
    f = ops.add_parser("status", help="clearing files waiting in each box, and the days with reports")
    f.add_argument("--json", action="store_true")
    sp.set_defaults(fn=cmd_clearing)
