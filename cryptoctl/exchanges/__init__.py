"""Exchange trade feeds (Binance, Coinbase, Kraken): wire formats, REST history, continuity.

See docs/exchanges.md and ../shared/EXCHANGES.md for the formats these modules speak.
"""
