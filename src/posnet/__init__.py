"""posnet: a card-present payment network in a box."""
__version__ = "0.1.0"
