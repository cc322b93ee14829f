"""An app labelled ``blog``, like its twin in the other package."""
