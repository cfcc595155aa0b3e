"""The one training loop (single process or torchrun) and the tasks it trains."""
