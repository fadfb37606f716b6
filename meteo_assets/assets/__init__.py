"""Asset factories driven by `datasets.toml`."""
