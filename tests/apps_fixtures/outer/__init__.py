"""An app that contains another app (``outer.inner``)."""
