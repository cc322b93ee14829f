"""An app whose ``apps`` module holds two configs and no default: a plain config is used."""
