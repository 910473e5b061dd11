"""posnet.security: the software security module (HSM) every party holds.

Public API: :class:`SecurityModule` and its exceptions.  Keys leave the module
only as key handles (encrypted under the module's LMK) or encrypted under
another key; no clear key or PIN is ever returned, logged or shown in a
repr, str or exception message.  See ``docs/security.md``.

DES/3DES come from ``cryptography``; the CUP ECB MAC, the ISO 9564 format 0
PIN block and the IBM 3624 PIN offset are written by hand in
``posnet.security._algorithms`` because no well-kept library offers them.
"""

from .errors import KeyCheckError, PinBlockFormatError, SecurityError
from .module import SecurityModule

__all__ = ["SecurityError", "KeyCheckError", "PinBlockFormatError", "SecurityModule"]
