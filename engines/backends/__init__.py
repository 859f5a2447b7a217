"""Classifier backends, one module per row of engines.formats.FORMATS, each imported only when a file of
its format is read or loaded. The interface they share is engines.backends.base.Engine."""
