"""An app whose ``apps`` module imports another app's config and defines its own."""
