"""Data contracts: ODCS v3 models, the compiler to Great Expectations, checks and validation.

Example::

    compiled = compile_contract(contract_by_id(settings.contracts_dir, "household"))
    validation = Validator(compiled, context).validate(batch, connector="gongan-household")

Modules: ``model`` (ODCS subset), ``compiler`` (rules, Arrow schema, the record key),
``checks`` and ``identifiers`` (GB 11643, GB 32100, GB/T 2260), ``expectations`` (GX suite),
``validate`` (quarantine and the error-rate gate), ``datadocs``, ``diff``, ``pinning``, ``conform``.
"""

__all__: list[str] = []
