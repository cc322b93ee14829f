"""An app without an ``apps`` module: it gets a plain AppConfig."""
