"""EA SPORTS F1 game (F1 23, F1 24, F1 25) UDP telemetry, decoded without I/O.

The UDP layer routes a datagram here when `looks_like_f1` is true and feeds
it to one long-lived `F1Decoder`; every car telemetry packet yields an
`F1Batch` of columns (one row per active car) in pitwall_rt field names
and units. Byte layouts live in `pitwall_rt.f1.layout`.
"""

from pitwall_rt.f1.decoder import F1Batch, F1Decoder, looks_like_f1
from pitwall_rt.f1.layout import SUPPORTED_FORMATS, PacketId

__all__ = ["SUPPORTED_FORMATS", "F1Batch", "F1Decoder", "PacketId", "looks_like_f1"]
