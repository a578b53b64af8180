"""Secrets from AWS SSM Parameter Store, loaded once per Lambda container.

The deployed functions get `SECRETS_SSM_PATH` (e.g. /scheduled-jobs/) instead of secrets in
plain environment variables; the SecureString parameters in that folder (DATABASE_URL,
CARTO_API_KEY, ...) are read at the first invocation and put into os.environ, where the rest
of the code looks. Heroku and local runs have no SECRETS_SSM_PATH and skip this entirely.
"""

import os

from shared.core import log

_loaded = False


def load() -> None:
    global _loaded
    path = os.environ.get("SECRETS_SSM_PATH")
    if _loaded or not path:
        return
    import boto3  # only here: the Lambda runtime provides it, other platforms never need it

    ssm = boto3.client("ssm")
    for page in ssm.get_paginator("get_parameters_by_path").paginate(Path=path, WithDecryption=True):
        for parameter in page["Parameters"]:
            name = parameter["Name"].rsplit("/", 1)[-1]
            log.add_secret(parameter["Value"])
            os.environ.setdefault(name, parameter["Value"])  # an explicit variable wins
    _loaded = True
