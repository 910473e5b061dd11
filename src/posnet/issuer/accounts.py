"""The issuer's own accounts in its books (docs/ledger.md); cardholders' accounts are numbered by the config."""

SCHEME_SETTLEMENT_ACCOUNT = 1  # what the issuer owes the scheme for its cardholders' purchases
FUNDING_ACCOUNT = 2
INTERCHANGE_INCOME_ACCOUNT = 3
SUSPENSE_ACCOUNT = 4
