"""Event-time windowing: candles and watermarks, pure and deterministic."""

from cryptoctl.windows.candles import (
    NO_WATERMARK,
    WIDTH_MS,
    Candle,
    PartitionWindows,
    new_candle,
)

__all__ = ["NO_WATERMARK", "WIDTH_MS", "Candle", "PartitionWindows", "new_candle"]
