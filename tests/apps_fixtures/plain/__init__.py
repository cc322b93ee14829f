"""An app with neither an ``apps`` nor a ``models`` module."""
