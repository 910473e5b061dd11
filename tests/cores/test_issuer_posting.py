"""The issuer posts a clearing file's plain postings a run at a time (``_post_run``: one ledger call,
``Ledger.post_pending``, for the run); each sale posted on its own through ``_sale`` must give the
same: the same effects (ledger changes, auths, reconciliation, traces), state and SMS."""

from dataclasses import replace

from posnet import clearing_files
from posnet.clearing_files import CLEARING_FIELDS, to_csv
from posnet.effects import Command
from posnet.issuer import clearing

POS = "pos-10000001"
PIN = "123456"
PAN = "6222020000000001"


def _one_at_a_time(issuer, run, posts, recon, touched, effects, now_ms):
    """The reference: each sale of the run posted by ``_sale`` alone, with a ledger call of its own."""
    for row, _auth in run:
        clearing._sale(issuer, clearing._as_dict(row), recon, touched, effects, now_ms)
    run.clear()
    posts.clear()


def _posted(world, card, monkeypatch, reference: bool):
    """The effects of one clearing file of plain postings, a sale presented twice in a run, a smaller
    and a larger presentment between runs, a refund and a sale the issuer never authorized."""
    world.command(POS, "sign-on")
    issuer = world.parties["issuer-bank-a"].core
    issuer.config = replace(issuer.config, sms_on_post=True)
    amounts = (3_000, 2_000, 1_500, 1_000, 700)
    refs = [world.command(POS, "sale", card=card, pin=PIN, amount_fen=a).done.result["reference_no"] for a in amounts]
    key = {a["rrn"]: k for k, a in issuer.auths.items()}

    def row(ref, amount, kind="sale", host_key=None):
        return dict({f: "" for f in CLEARING_FIELDS}, issuer="01020000", acquirer_id="48020000", source_file="x", currency="156",
                    interchange_fen=amount // 100, acquirer_fee_fen=1, issuer_fee_fen=1, lifecycle=ref, kind=kind, pan=PAN,
                    amount_fen=amount, host_key=key.get(ref, "") if host_key is None else host_key)

    rows = [row(refs[0], 3_000), row(refs[0], 3_000), row(refs[1], 2_000), row(refs[2], 1_200), row(refs[3], 1_000),
            row("999999999999", 500, "refund"), row(refs[4], 900), row("888888888888", 400, host_key="no-such-auth")]
    if reference:
        monkeypatch.setattr(clearing, "_post_run", _one_at_a_time)
    name = "C00010000_bank-a_20261124_000099.csv"
    box = clearing_files.issuer_box("bank-a")
    args = {"box": box, "name": name, "text": to_csv(rows, CLEARING_FIELDS)}
    effects = issuer.handle(Command(clearing_files.CLEARING_FILE, args), world.now_ms)
    return effects, issuer


def test_a_run_of_postings_gives_what_each_posted_alone_gives(world_of, demo_net, card, monkeypatch):
    got, issuer = _posted(world_of(demo_net), card, monkeypatch, reference=False)
    want, reference = _posted(world_of(demo_net), card, monkeypatch, reference=True)
    assert got == want
    assert issuer.auths == reference.auths
    assert issuer.recon == reference.recon
    assert issuer.sms_outbox == reference.sms_outbox
    assert issuer.ledger.transfers() == reference.ledger.transfers()
    assert issuer.ledger.accounts() == reference.ledger.accounts()
    [recon] = issuer.recon.values()
    assert recon["matched_count"] == 5 and len(recon["differences"]) == 2, recon
    assert any(line[1] == "posted" for page in issuer.sms_outbox.values() for line in page["sms"]), issuer.sms_outbox


def test_a_clearing_files_rows_as_tuples_are_its_rows_as_dicts_in_the_order_kept():
    rows = [dict({f: f"{f}-{i}" for f in CLEARING_FIELDS}, amount_fen=i, interchange_fen=2, acquirer_fee_fen=1, issuer_fee_fen=0)
            for i in range(3)]
    text = to_csv(rows, CLEARING_FIELDS)
    keep = clearing.POSTING_FIELDS
    assert clearing_files.tuples_of(text, CLEARING_FIELDS, keep) == [
        tuple(d[f] for f in keep) for d in clearing_files.from_csv(text, CLEARING_FIELDS, keep)]
    assert clearing_files.tuples_of(text, CLEARING_FIELDS, keep)[2][clearing.AMOUNT] == 2
