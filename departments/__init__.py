"""The demo department systems OnceOnly pulls from: 公安 户籍, 市场监管 营业执照, 民政 婚姻登记,
卫健 出生医学证明, 不动产登记 不动产权证书, 人社 社会保险参保.

Example::

    from departments import LicenceApi, demo_token, generate_all

    manifest = generate_all(Path("var/departments"), rows=5000, seed=20261121)
    with LicenceApi(Path("var/departments/scjg/licences.db"), demo_token(20261121)) as api:
        print(api.base_url)          # http://127.0.0.1:54321/api/v1

Generated data are synthetic and deterministic: same seed and rows, same bytes.
"""

from departments.generate import (
    API_TOKEN_ENV,
    DATASETS,
    DEFAULT_ROWS,
    DEFAULT_SEED,
    Batch,
    DatasetManifest,
    Manifest,
    add_updates,
    demo_token,
    generate_all,
    generate_if_missing,
)
from departments.household import default_household_url, household_member
from departments.licences import LICENCE_COLUMNS, Faults, LicenceApi
from departments.marriages import MARRIAGE_HEADER, marriage_file_name
from departments.population import BAD_ROW_KINDS, BASE_TIME, BadRow
from departments.registrations import local_registrations

__all__ = [
    "API_TOKEN_ENV",
    "BAD_ROW_KINDS",
    "BASE_TIME",
    "DATASETS",
    "DEFAULT_ROWS",
    "DEFAULT_SEED",
    "LICENCE_COLUMNS",
    "MARRIAGE_HEADER",
    "BadRow",
    "Batch",
    "DatasetManifest",
    "Faults",
    "LicenceApi",
    "Manifest",
    "add_updates",
    "default_household_url",
    "demo_token",
    "generate_all",
    "generate_if_missing",
    "household_member",
    "local_registrations",
    "marriage_file_name",
]
