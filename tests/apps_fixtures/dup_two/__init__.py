"""A package holding an app named ``blog``."""
