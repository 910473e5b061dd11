"""ISO 8583 on the wire: specs, codecs, framing, field helpers and codes."""

from .codec import (
    MAX_FRAME_BYTES,
    FrameReader,
    Message,
    WireError,
    decode_host,
    decode_terminal,
    encode_host,
    encode_terminal,
    frame,
    reply_tpdu,
)
from .codes import RC, HostNetworkCode, Kind, NetworkCode, ProcessingCode, TxType, response_mti, response_text

__all__ = [
    "MAX_FRAME_BYTES",
    "FrameReader",
    "HostNetworkCode",
    "Kind",
    "Message",
    "NetworkCode",
    "ProcessingCode",
    "RC",
    "TxType",
    "WireError",
    "decode_host",
    "decode_terminal",
    "encode_host",
    "encode_terminal",
    "frame",
    "reply_tpdu",
    "response_mti",
    "response_text",
]
