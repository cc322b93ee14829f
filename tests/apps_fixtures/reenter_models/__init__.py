"""An app whose models module calls populate() again, which must be refused."""
