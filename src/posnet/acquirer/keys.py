"""Terminal master keys (TMK) at the acquirer: a new TMK for a terminal, and the key-injection file.

A terminal whose case was opened has lost every key. The acquirer's operator
makes it a new TMK — generated in the acquirer's security module, or given
as a cryptogram under the transport key (传输密钥) — and the acquirer keeps
it in place of the configured one (``Command("inject-tmk")``). The service
provider's key-loading device holds the same transport key: it reads the
key-injection file, and the terminal imports the TMK under it, checking its
KCV. No clear key is in the file, on the command line or in a log.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from ..security import SecurityModule

KEY_FILE_FORMAT = "posnet-key-injection/1"
KEY_FILE_MODE = 0o600  # for the operator and the key-loading device only
KCV_HEX = 8  # 4 bytes


@dataclass(frozen=True)
class KeyInjection:
    terminal_id: str
    tmk_under_tk: str  # hex: the TMK, triple DES ECB under the transport key
    kcv: str  # hex: the TMK's check value
    tk_kcv: str  # hex: which transport key it is under
    format: str = KEY_FILE_FORMAT

    def __post_init__(self) -> None:
        assert len(self.kcv) == KCV_HEX and len(self.tk_kcv) == KCV_HEX, "a KCV is 4 bytes"


def new_tmk(hsm: SecurityModule, tk: str, terminal_id: str) -> tuple[str, KeyInjection]:
    """A fresh TMK for ``terminal_id``: its handle under the acquirer's LMK, and the injection under ``tk``."""
    tmk = hsm.generate_key()
    return tmk, _injection(hsm, tk, tmk, terminal_id)


def tmk_from_transport(hsm: SecurityModule, tk: str, terminal_id: str, tmk_under_tk: str, kcv: str) -> tuple[str, KeyInjection]:
    """A TMK the operator was given under the transport key; its KCV must match (KeyCheckError if not)."""
    tmk = hsm.import_key(tk, bytes.fromhex(tmk_under_tk), bytes.fromhex(kcv))
    return tmk, _injection(hsm, tk, tmk, terminal_id)


def _injection(hsm: SecurityModule, tk: str, tmk: str, terminal_id: str) -> KeyInjection:
    return KeyInjection(
        terminal_id=terminal_id,
        tmk_under_tk=hsm.export_key(tk, tmk).hex().upper(),
        kcv=hsm.kcv(tmk).hex().upper(),
        tk_kcv=hsm.kcv(tk).hex().upper(),
    )


def write_key_file(path: str | os.PathLike[str], injection: KeyInjection) -> None:
    p = Path(path)
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, KEY_FILE_MODE)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(asdict(injection), f, indent=2)
        f.write("\n")
    os.chmod(p, KEY_FILE_MODE)


def read_key_file(path: str | os.PathLike[str]) -> KeyInjection:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: not a key-injection file: {e}") from None
    if not isinstance(data, dict) or data.get("format") != KEY_FILE_FORMAT:
        raise ValueError(f"{path}: not a key-injection file (format {KEY_FILE_FORMAT!r} expected)")
    try:
        return KeyInjection(**data)
    except (TypeError, AssertionError) as e:
        raise ValueError(f"{path}: key-injection file: {e}") from None
