"""Django twins of the many-to-many scenarios."""
