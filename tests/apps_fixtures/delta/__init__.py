"""An app that connects its receivers from ready(), the recommended pattern."""
