"""The issuer's SMS notifier: delivers the outbox (issuer/sms.py) to the cardholders' phones.

It runs in the issuer's process, beside the core. The node tells it of every
``sms_outbox`` page once committed; at start it takes the pages the store kept
and what each channel had. Each SMS goes to every channel, in the order the
SMS were written:

- ``inbox``: the local inbox, a SQLite file in the issuer's folder
  (``data/issuer-<name>/sms-inbox.sqlite``), standing for the phones. An SMS
  is inserted by its id or not at all (INSERT OR IGNORE), so a delivery
  repeated after a crash is not a second message.
- ``webhook``: the SMS gateway, when ``[sms] webhook_url`` is set: one POST
  of JSON per SMS with the header ``Idempotency-Key: <id>``. Anything but a
  2xx answer, a refused connection or a timeout is retried, with a wait that
  doubles from ``retry_first_ms`` up to ``retry_cap_ms``.

A channel's progress is reported to the core as the command
``sms-delivered``: the channel has every SMS through number N (the lowest it
still lacks, less one). The core, the store's single writer, records that
mark and removes the pages every channel is through. A crash before that
commit delivers again what came after the mark, with the same ids: at least
once to the channel, exactly once to the phone.

``posnet sms`` (``register_cli``) shows the inboxes of every issuer.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import sys
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from itertools import islice
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .. import config as cfg
from .. import timefmt
from ..effects import Command, Put, mask_pan
from ..issuer.sms import DELIVERED, INBOX, OUTBOX, THROUGH, WEBHOOK, bank_of, numbered, page_rows, text

log = logging.getLogger("posnet.sms")

INBOX_FILE = "sms-inbox.sqlite"
INBOX_BATCH_MAX = 256  # SMS written to the inbox in one transaction, and reported in one command
WEBHOOK_IN_FLIGHT_MAX = 8  # POSTs to the gateway at once
RESPONSE_MAX_BYTES = 64 * 1024  # what is read of the gateway's answer

INBOX_SCHEMA = """
CREATE TABLE IF NOT EXISTS sms (
    id TEXT PRIMARY KEY,
    at_ms INTEGER NOT NULL,
    bank TEXT NOT NULL,
    phone TEXT NOT NULL,
    card TEXT NOT NULL,
    event TEXT NOT NULL,
    text TEXT NOT NULL
)
"""
INBOX_COLUMNS = ("id", "at_ms", "bank", "phone", "card", "event", "text")


def inbox_path(directory: Path) -> Path:
    return Path(directory) / INBOX_FILE


class Inbox:
    """The phones: every SMS an issuer delivered, once each."""

    def __init__(self, path: Path):
        self.conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")  # delivered means on the disk: the outbox row goes next
        self.conn.execute(INBOX_SCHEMA)

    def deliver(self, rows: list[dict[str, Any]]) -> list[str]:
        """Write ``rows`` (messages: ``Notifier.message``) in one transaction; the outbox keys of those now
        in the inbox (none when the write failed)."""
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            self.conn.executemany(
                f"INSERT OR IGNORE INTO sms ({', '.join(INBOX_COLUMNS)}) VALUES ({', '.join('?' * len(INBOX_COLUMNS))})",
                [tuple(r[c] for c in INBOX_COLUMNS) for r in rows],
            )
            self.conn.execute("COMMIT")
        except sqlite3.Error as e:
            log.warning("SMS inbox: write failed, will retry: %s", e)
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            return []
        return [r["number"] for r in rows]

    def close(self) -> None:
        self.conn.close()


def webhook_payload(row: dict[str, Any]) -> dict[str, Any]:
    """What the gateway receives for one SMS (docs/sms.md); ``row``: a message (``Notifier.message``)."""
    return {
        "id": row["id"],
        "phone": row["phone"],
        "card": row["card"],
        "text": row["text"],
        "time": timefmt.local(row["at_ms"]).isoformat(),
        "event": row["event"],
        "bank": row["bank"],
    }


async def post_json(url: str, payload: dict[str, Any], headers: dict[str, str], timeout_s: float) -> int:
    """POST ``payload`` as JSON over HTTP/1.1 (one connection per request); the answer's status code."""
    u = urlsplit(url)
    https = u.scheme == "https"
    body = json.dumps(payload, ensure_ascii=False).encode()
    host = u.hostname or ""
    head = [
        f"POST {u.path or '/'}{'?' + u.query if u.query else ''} HTTP/1.1",
        f"Host: {host}{f':{u.port}' if u.port else ''}",
        "Content-Type: application/json; charset=utf-8",
        f"Content-Length: {len(body)}",
        "Connection: close",
        "User-Agent: posnet-sms",
        *(f"{k}: {v}" for k, v in headers.items()),
    ]

    async def exchange() -> int:
        reader, writer = await asyncio.open_connection(host, u.port or (443 if https else 80), ssl=True if https else None)
        try:
            writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
            await writer.drain()
            status_line = await reader.readline()
            await reader.read(RESPONSE_MAX_BYTES)  # the rest of the answer, politely, up to the close
        finally:
            writer.close()
        parts = status_line.split()
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
            raise OSError(f"not an HTTP answer: {status_line[:80]!r}")
        return int(parts[1])

    return await asyncio.wait_for(exchange(), timeout_s)


class Notifier:
    """Delivers the outbox of the issuer whose node it is attached to, on each of its channels."""

    def __init__(self, node: Any, settings: cfg.SmsSettings, directory: Path, pages: dict[str, dict[str, Any]],
                 through: dict[str, int]):
        self.node = node
        self.settings = settings
        self.channels: tuple[str, ...] = node.core.config.sms_channels
        self.inbox = Inbox(inbox_path(directory))
        self.bank = bank_of(node.core.config)
        # channel -> number -> SMS, oldest first; taken from the front (a plain dict slows down as its front empties)
        self._queues: dict[str, OrderedDict[int, dict[str, Any]]] = {c: OrderedDict() for c in self.channels}
        self._through = {c: int(through.get(c, 0)) for c in self.channels}  # as reported to the core
        self._newest = dict(self._through)  # the newest SMS queued on each channel
        self._wake = {c: asyncio.Event() for c in self.channels}
        self._failing: set[str] = set()
        self._tasks: list[asyncio.Task] = []
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="sms-inbox")  # the inbox's fsync off the loop
        self._queue(numbered(pages))
        node.after_commit.append(self.on_commit)
        node.companions.append(self)

    def _queue(self, sms: list[tuple[int, dict[str, Any]]]) -> None:
        for channel in self.channels:
            queue, through = self._queues[channel], self._through[channel]
            for number, row in sms:
                if number > through:
                    queue.setdefault(number, row)
                    self._newest[channel] = max(self._newest[channel], number)
            if queue:
                self._wake[channel].set()

    def message(self, number: int, row: dict[str, Any]) -> dict[str, Any]:
        """An SMS as it is sent: its facts, its number, the bank, and the words (put together now, a
        batch at a time, not for a million SMS at once after a sweep's commit)."""
        return {**row, "number": number, "bank": self.bank, "text": text(self.bank, row)}

    def on_commit(self, records: list[Any]) -> None:
        for r in records:
            if isinstance(r, Put) and r.table == OUTBOX:
                self._queue(page_rows(r.key, r.value))  # pages come in the order of their numbers

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._run(c), name=f"sms-{c}") for c in self.channels]

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._writer.shutdown(wait=True)  # an inbox write under way finishes before the file closes
        self.inbox.close()

    async def _run(self, channel: str) -> None:
        queue = self._queues[channel]
        wait_ms = self.settings.retry_first_ms
        while True:
            if not queue:
                self._wake[channel].clear()
                await self._wake[channel].wait()
                continue
            batch = [self.message(n, r) for n, r in islice(queue.items(), INBOX_BATCH_MAX if channel == INBOX else WEBHOOK_IN_FLIGHT_MAX)]
            try:
                if channel == INBOX:
                    done = await asyncio.get_running_loop().run_in_executor(self._writer, self.inbox.deliver, batch)
                else:
                    done = await self._to_webhook(batch)
            except Exception:  # a bug here must not stop the SMS: the batch is tried again later
                log.exception("SMS %s: delivery failed", channel)
                done = []
            for number in done:
                queue.pop(number, None)
            through = next(iter(queue)) - 1 if queue else self._newest[channel]
            if through > self._through[channel]:  # every SMS up to it is on the channel
                self._through[channel] = through
                self.node.submit(Command(DELIVERED, {"channel": channel, "through": through}))
            if len(done) < len(batch):
                self._failing.add(channel)
                await asyncio.sleep(wait_ms / 1000)
                wait_ms = min(wait_ms * 2, self.settings.retry_cap_ms)
            else:
                if channel in self._failing:
                    log.info("SMS %s: delivering again", channel)
                    self._failing.discard(channel)
                wait_ms = self.settings.retry_first_ms

    async def _to_webhook(self, batch: list[dict[str, Any]]) -> list[str]:
        async def one(row: dict[str, Any]) -> str | None:
            try:
                status = await post_json(
                    self.settings.webhook_url, webhook_payload(row), {"Idempotency-Key": row["id"]}, self.settings.timeout_ms / 1000
                )
            except Exception as e:  # down, refusing, slow, or not speaking HTTP: all are tried again
                reason = f"{type(e).__name__}: {e}"
            else:
                if 200 <= status < 300:
                    return row["number"]
                reason = f"answered {status}"
            if WEBHOOK not in self._failing:  # once per outage, not once per attempt
                log.warning("SMS gateway %s: %s; retrying with backoff", self.settings.webhook_url, reason)
            return None

        results = await asyncio.gather(*(one(r) for r in batch))
        return [r for r in results if r is not None]


def attach(node: Any, net: cfg.Network, party: str, directory: Path) -> Notifier:
    """The notifier of issuer ``party`` beside its node, whose core is restored: it delivers what the
    core's outbox holds beyond each channel's mark."""
    issuer = next(i for i in net.issuers if f"issuer-{i['name']}" == party)
    return Notifier(node, cfg.sms_settings(net, issuer), directory, node.core.sms_outbox, node.core.sms_through)


# -- posnet sms -----------------------------------------------------------------------


def register_cli(sub, with_config) -> None:
    sp = with_config(sub.add_parser("sms", help="the SMS the issuers sent to cardholders (the phones' inbox)"))
    sp.add_argument("--card", help="only the SMS of this card (PAN)")
    sp.add_argument("--phone", help="only the SMS to this phone number")
    sp.add_argument("--outbox", action="store_true", help="the SMS not yet delivered on every channel, instead")
    sp.add_argument("--json", action="store_true", help="print the messages as JSON")
    sp.set_defaults(fn=cmd_sms)


def read_inbox(net: cfg.Network) -> list[dict[str, Any]]:
    """Every issuer's inbox, oldest first."""
    out: list[dict[str, Any]] = []
    for i in net.issuers:
        path = inbox_path(net.data_dir / f"issuer-{i['name']}")
        if not path.exists():
            continue
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            rows = conn.execute(f"SELECT {', '.join(INBOX_COLUMNS)} FROM sms ORDER BY at_ms, rowid").fetchall()
        finally:
            conn.close()
        out += [{"issuer": i["name"], **dict(zip(INBOX_COLUMNS, r, strict=True))} for r in rows]
    out.sort(key=lambda m: m["at_ms"])  # stable: each issuer's own order stays
    return out


def read_outbox(net: cfg.Network) -> list[dict[str, Any]]:
    """Every issuer's undelivered SMS, read from its store (the party may be running)."""
    from .parties import party_schema, store_location
    from .store import PartyStore

    out: list[dict[str, Any]] = []
    for i in net.issuers:
        party = f"issuer-{i['name']}"
        location = store_location(net, party) if "database" in net.raw.get("network", {}) else str(net.data_dir / party / f"{party}.sqlite")
        if not location.startswith("postgres") and not Path(location).exists():
            continue
        store = PartyStore(location, schema=party_schema(net, party) if location.startswith("postgres") else None)
        try:
            bank = i.get("display_name") or i["name"]
            channels = cfg.sms_settings(net, i).channels
            through = store.rows(THROUGH).get("through", {})
            pages = {k: v for k, v in store.rows(OUTBOX).items() if "fields" in v}  # (a row of the first form: pages at the next start)
            for number, row in numbered(pages):
                has = [c for c in channels if through.get(c, 0) >= number]
                if len(has) < len(channels):
                    out.append({"issuer": i["name"], **row, "number": number, "text": text(bank, row), "delivered": has})
        finally:
            store.close()
    out.sort(key=lambda m: m["at_ms"])
    return out


def cmd_sms(args) -> int:
    net = cfg.load(args.config)
    if args.card and not (args.card.isdigit() and 13 <= len(args.card) <= 19):
        print("posnet sms: --card is a card number, 13 to 19 digits", file=sys.stderr)
        return 2
    messages = read_outbox(net) if args.outbox else read_inbox(net)
    if args.card:
        messages = [m for m in messages if m["card"] == mask_pan(args.card)]
    if args.phone:
        messages = [m for m in messages if m["phone"] == args.phone]
    if args.json:
        print(json.dumps(messages, ensure_ascii=False, indent=1))
        return 0
    for m in messages:
        when = timefmt.stamp(m["at_ms"])
        if args.outbox:
            print(f"{when}  #{m['number']}  {m['id']}  {m['event']}  delivered: {', '.join(m['delivered']) or 'nowhere yet'}")
            print(f"    {m['text']}")
        else:
            print(f"{when}  {m['phone'][:3]}****{m['phone'][-4:]}  {m['text']}")
    if not messages:
        print("no SMS undelivered" if args.outbox else "no SMS")
    return 0
