"""SMS over a real network: each money event reaches the cardholder's phone once, and the SMS
gateway once per id, while the gateway is down, refusing, and across a crash of the issuer."""

import json
import signal
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from cli_helpers import pos, posnet, running_network, wait_until

from posnet.demo.story import free_ports, write_config
from posnet.runtime.pos import wait_for_port

pytestmark = pytest.mark.e2e

PAN = "6222020000000001"


class Gateway:
    """An SMS gateway: answers ``status`` to every POST and keeps what it was sent."""

    def __init__(self, port: int):
        self.port = port
        self.status = 503
        self.posts: list[tuple[str, dict]] = []  # (Idempotency-Key, body)
        self.refused = 0
        self.server: ThreadingHTTPServer | None = None

    def start(self) -> None:
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if gateway.status == 200:
                    gateway.posts.append((self.headers["Idempotency-Key"], body))
                else:
                    gateway.refused += 1
                self.send_response(gateway.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()


def sms_json(net, *args):
    return json.loads(posnet(net, "sms", "--json", *args, check=True).stdout)


def run_issuer(path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "posnet", "run", "issuer-bank-a", "--config", str(path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


@pytest.mark.timeout(180)
def test_each_money_event_is_one_sms_while_the_gateway_is_down_refusing_and_the_issuer_crashes(tmp_path):
    (gateway_port,) = free_ports(1)
    gateway = Gateway(gateway_port)
    settings = (f'\n[sms]\nwebhook_url = "http://127.0.0.1:{gateway_port}/sms/send"\n'
                "retry_first_ms = 50\nretry_cap_ms = 400\ntimeout_ms = 2000\n")
    with running_network(tmp_path, edit=lambda text: text + settings) as (net, procs):
        try:
            # The gateway is down (nothing listens): the phones still get every SMS from the inbox.
            assert pos(net, "sign-on")["ok"]
            first = pos(net, "sale", "--amount", "12.34")
            second = pos(net, "sale", "--amount", "66.66")
            assert pos(net, "void", "--voucher", str(int(first["result"]["voucher_no"])))["ok"]
            assert pos(net, "refund", "--ref", second["result"]["reference_no"], "--date", _mmdd(second), "--amount", "20.00")["ok"]
            cut = posnet(net, "pos", "power-cut", "--at", "sent", "sale", "--amount", "5.00")
            assert cut.returncode != 0, "the terminal died with the sale on the wire"
            assert posnet(net, "pos", "power-on", check=True)  # the reversal goes first
            expected = ["hold", "hold", "void", "refund", "hold", "reversal"]
            assert wait_until(lambda: [m["event"] for m in sms_json(net)] == expected), sms_json(net)
            undelivered = sms_json(net, "--outbox")
            assert sorted(m["event"] for m in undelivered) == sorted(expected)
            assert all(m["delivered"] == ["inbox"] for m in undelivered), "the webhook has none of them yet"

            # The gateway comes up but refuses (503); meanwhile the issuer is killed and started again.
            gateway.start()
            assert wait_until(lambda: gateway.refused >= 2)
            issuer = procs[0]
            issuer.send_signal(signal.SIGKILL)
            issuer.wait()
            procs[0] = run_issuer(net.path)
            ep = net.endpoint("issuer-bank-a")
            assert wait_for_port(ep.host, ep.port)
            assert [m["event"] for m in sms_json(net)] == expected, "the restart sent nothing twice to the phones"

            # The gateway takes them: every SMS reaches it, with its id as the idempotency key.
            gateway.status = 200
            assert wait_until(lambda: sms_json(net, "--outbox") == []), sms_json(net, "--outbox")
            inbox = sms_json(net)
            assert [m["event"] for m in inbox] == expected
            assert {key for key, _ in gateway.posts} == {m["id"] for m in inbox}
            assert all(key == body["id"] for key, body in gateway.posts)
            assert len(gateway.posts) == len(inbox), "each id reached the gateway once, once it answered 200"
            for key, body in gateway.posts:
                assert body["phone"] == "13800000001" and body["card"] == "622202******0001"
                assert PAN not in body["text"] and "尾号0001" in body["text"]
                assert body["time"].endswith("+08:00")
            texts = [m["text"] for m in inbox]
            assert "消费人民币12.34元" in texts[0] and "消费撤销，退回人民币12.34元" in texts[2]
            assert "退货收入人民币20.00元" in texts[3] and "消费冲正，退回人民币5.00元" in texts[5]

            # The filters and the plain listing.
            assert sms_json(net, "--card", "6217000000000001") == []
            assert len(sms_json(net, "--phone", "13800000001")) == len(expected)
            listing = posnet(net, "sms", check=True).stdout.splitlines()
            assert len(listing) == len(expected) and "138****0001" in listing[0]
            bad = posnet(net, "sms", "--card", "12ab")
            assert bad.returncode == 2 and "13 to 19 digits" in bad.stderr
        finally:
            gateway.stop()


def _mmdd(sale) -> str:
    """The sale's date as its receipt shows it (the refund names it)."""
    return sale["receipts"][0].split("日期/时间(DATE/TIME): ")[1][5:10].replace("/", "")


def test_a_bad_webhook_url_is_named_when_the_config_is_loaded(tmp_path):
    path = write_config(tmp_path)
    path.write_text(path.read_text(encoding="utf-8") + '\n[sms]\nwebhook_url = "ftp://gateway"\n', encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "posnet", "sms", "--config", str(path)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "webhook_url is an http:// or https:// URL" in proc.stderr


def test_the_sms_doc_runs_as_written(network):
    """docs/sms.md's `posnet sms` walkthrough on a fresh demo network; only the times differ."""
    import re
    import shlex
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "sms.md").read_text(encoding="utf-8")
    (block,) = re.findall(r"```console\n(.*?)```", doc, re.S)
    times = re.compile(r"\d{4}/\d\d/\d\d \d\d:\d\d:\d\d|\d{1,2}月\d{1,2}日\d\d:\d\d")
    lines = block.splitlines()
    for n, line in enumerate(lines):
        if not line.startswith("$ "):
            continue
        expected = []
        for out in lines[n + 1 :]:
            if out.startswith("$ "):
                break
            expected.append(out)
        proc = posnet(network, *shlex.split(line[2:])[1:], check=True)
        if line.startswith("$ posnet sms"):
            assert times.sub("T", proc.stdout).splitlines() == [times.sub("T", e) for e in expected], line


def test_a_hold_that_never_clears_is_released_at_expiry_with_its_sms(tmp_path):
    """The seed's case: a sale with its receipt that nobody presents; two days on the hold is released, and told."""
    with running_network(tmp_path, edit=lambda text: text.replace("[network]\n", "[network]\ndev_clock = true\n", 1)) as (net, _):
        assert pos(net, "sign-on")["ok"]
        assert pos(net, "sale", "--amount", "12.34")["ok"]
        assert wait_until(lambda: [m["event"] for m in sms_json(net)] == ["hold"])
        posnet(net, "clock", "advance", "49h", check=True)
        assert wait_until(lambda: [m["event"] for m in sms_json(net)] == ["hold", "expiry"]), sms_json(net)
        expiry = sms_json(net)[1]["text"]
        assert "消费冻结的人民币12.34元，因商户未请款已于" in expiry and expiry.endswith("解冻，可用余额10000.00元。")
        posnet(net, "clock", "advance", "49h", check=True)
        assert [m["event"] for m in sms_json(net)] == ["hold", "expiry"], "an expiry is told once"
        assert wait_until(lambda: sms_json(net, "--outbox") == [])
