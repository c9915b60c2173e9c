"""cryptoctl: a real-time cryptocurrency market pipeline (Kafka -> OHLC candles -> PostgreSQL/Redis)."""

__version__ = "0.1.0"
