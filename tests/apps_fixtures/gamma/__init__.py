"""An app whose ``apps`` module holds two configs, one marked ``default = True``."""
