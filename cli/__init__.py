"""The ``onceonly`` command line: the roof over every stage.

Example::

    onceonly --help
    onceonly connectors list
    onceonly certificates export 1.2.156.3005.2.... -o bundle.json

One module per stage's commands (``connectors``, ``contracts``, ``quarantine``, ``certificates``,
``keys``, ``log``, ``sharing``, ``demo``, ``run``), one console helper (``console``), and
``main``, the entry point. Stages are imported inside the commands that use them, so
``onceonly --help`` and commands that only read the catalog start quickly.
"""

__all__: list[str] = []
