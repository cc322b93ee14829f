"""An app whose config sets a label that is not an identifier."""
