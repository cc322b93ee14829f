"""An app with an ``apps`` module holding one config and a ``models`` module."""
