"""OnceOnly: cross-department data sharing so citizens submit each proof once.

The pipeline's stages are top-level packages (``connectors``, ``contracts``, ``lake``,
``evidence``, ``sharing``, ``flows``); this package holds what they share: settings, the
exception tree, masking of personal data, and the ``onceonly`` command line.
"""

__version__ = "0.1.0"
