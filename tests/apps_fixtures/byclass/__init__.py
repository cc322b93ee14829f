"""An app whose configs live in a ``configs`` module, reachable only by class path."""
