"""Django twins of the model-lifecycle scenarios."""
