"""posnet's chart of accounts: ledger numbers, account codes, transfer codes.

A ledger number is an ISO 4217 numeric currency code: accounts and transfers
of different currencies never mix. An account's ``code`` says what kind of
account it is, a transfer's ``code`` why money moved. docs/ledger.md explains
each party's chart and the transfers of a purchase, a refund and settlement.
"""

# Ledgers: ISO 4217 numeric currency codes.
CNY = 156

# ---------------------------------------------------------------- account codes
# Issuer (1xxx)
ISSUER_CARDHOLDER = 1101  # a cardholder's account: a liability, DEBITS_MUST_NOT_EXCEED_CREDITS
ISSUER_SCHEME_SETTLEMENT = 1201  # what the issuer owes the scheme for its cardholders' purchases
ISSUER_INTERCHANGE_INCOME = 1301  # interchange fees earned
ISSUER_SUSPENSE = 1401  # money whose home is not yet known (unmatched clearing, disputes)
ISSUER_FUNDING = 1501  # the bank's own funds: where opening balances come from

# Acquirer (2xxx)
ACQUIRER_MERCHANT = 2101  # what the acquirer owes a merchant
ACQUIRER_SCHEME_SETTLEMENT = 2201  # what the scheme owes the acquirer
ACQUIRER_FEE_INCOME = 2301  # merchant discount (MDR) earned
ACQUIRER_SUSPENSE = 2401  # unmatched or disputed amounts
ACQUIRER_FUNDING = 2501  # the acquirer's own funds

# Switch / scheme (3xxx)
SWITCH_MEMBER_POSITION = 3101  # one per member bank: its net position in the current cycle
SWITCH_SETTLEMENT = 3201  # the settlement bank account members pay into and are paid from
SWITCH_FEE_INCOME = 3301  # scheme fees earned

# --------------------------------------------------------------- transfer codes
OPENING_BALANCE = 1
PURCHASE_HOLD = 10
PURCHASE_POST = 11
HOLD_VOID = 12
REFUND_CREDIT = 20
FEE = 30
SETTLEMENT = 40
MANUAL_CREDIT = 50
CHARGEBACK = 60
# The issuer advances what a card can no longer cover when a reversed void puts its sale's hold back
# (the sale was authorized when the money was there): an overdraft, booked against suspense.
OVERDRAFT_ADVANCE = 70

ACCOUNT_CODE_NAMES = {
    ISSUER_CARDHOLDER: "issuer cardholder",
    ISSUER_SCHEME_SETTLEMENT: "issuer scheme settlement",
    ISSUER_INTERCHANGE_INCOME: "issuer interchange income",
    ISSUER_SUSPENSE: "issuer suspense",
    ISSUER_FUNDING: "issuer funding",
    ACQUIRER_MERCHANT: "acquirer merchant",
    ACQUIRER_SCHEME_SETTLEMENT: "acquirer scheme settlement",
    ACQUIRER_FEE_INCOME: "acquirer fee income",
    ACQUIRER_SUSPENSE: "acquirer suspense",
    ACQUIRER_FUNDING: "acquirer funding",
    SWITCH_MEMBER_POSITION: "switch member position",
    SWITCH_SETTLEMENT: "switch settlement",
    SWITCH_FEE_INCOME: "switch fee income",
}

TRANSFER_CODE_NAMES = {
    OPENING_BALANCE: "opening balance",
    PURCHASE_HOLD: "purchase hold",
    PURCHASE_POST: "purchase post",
    HOLD_VOID: "hold void",
    REFUND_CREDIT: "refund credit",
    FEE: "fee",
    SETTLEMENT: "settlement",
    MANUAL_CREDIT: "manual credit",
    CHARGEBACK: "chargeback",
    OVERDRAFT_ADVANCE: "overdraft advance",
}
