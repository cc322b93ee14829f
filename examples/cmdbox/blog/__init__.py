"""The blog app: posts written by users."""
