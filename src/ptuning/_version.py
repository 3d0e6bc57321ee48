"""The package version, in a leaf module: modules inside the package read it here, not from the facade."""

__version__ = "0.1.0"
