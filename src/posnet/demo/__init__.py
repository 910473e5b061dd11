"""The demo network that `posnet init` writes and `posnet demo` runs."""

from importlib.resources import files


def demo_config_text() -> str:
    return files(__package__).joinpath("posnet.toml").read_text(encoding="utf-8")
