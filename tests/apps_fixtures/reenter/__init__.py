"""An app whose ready() calls populate() again, which must be refused."""
