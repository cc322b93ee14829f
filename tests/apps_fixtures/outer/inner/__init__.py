"""An app nested inside the ``outer`` app."""
