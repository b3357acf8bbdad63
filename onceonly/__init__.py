"""OnceOnly: cross-department data sharing so citizens submit each proof once.

The ground floor every stage stands on: settings (``settings``) and the readers' limits
(``limits``), the exception tree (``errors``), masking of personal data (``privacy``), durable,
private files (``files``), the strict YAML reader (``yamlfile``) and spreadsheet-safe text
(``cells``).
The stages are top-level packages in pipeline order — ``connectors``, ``contracts``,
``evidence``, ``lake``, ``sharing`` — over the ``catalog``, under the roof of ``flows`` and
``cli`` (README, Layout).
"""

__version__ = "0.1.0"

__all__: list[str] = []
