"""The ``natkit`` command line: thin wrappers from flags to natkit's drivers."""
