"""An app whose ``apps`` module declares two defaults, which is an error."""
