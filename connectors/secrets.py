"""Resolve secrets by name at the last moment; values are never stored or logged.

Example::

    resolver = EnvironmentSecrets()                    # or PrefectSecrets(), or ChainedSecrets(...)
    password = resolver.resolve("ONCEONLY_SECRET_GONGAN_HOUSEHOLD_PASSWORD", connector="gongan-household")

Registration files hold secret NAMES. A missing secret is a clear, terminal error naming the
connector and the secret's name — never its value.

Each connector's secrets live in its own namespace: ``ONCEONLY_SECRET_<CONNECTOR>_<NAME>``
(the connector's name upper-cased, ``-`` as ``_``), as an environment variable or as the
Prefect Secret block of that name in lower case with dashes
(``onceonly-secret-gongan-household-password``). A registration naming anything else — the
district's key passphrase variable, another connector's token, ``PATH`` — is refused when it
is read, and every resolver refuses it again when asked, so a department's engineer cannot
have the district's passphrase sent to their API as a bearer token.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Protocol, cast

from onceonly.errors import ConfigurationError

SECRET_PREFIX = "ONCEONLY_SECRET_"
# No '_' in <NAME>: a name then splits one way only (connector `scjg` must not name
# ONCEONLY_SECRET_SCJG_LICENCES_TOKEN, the secret of connector `scjg-licences`).
_REST_RE = re.compile(r"^[A-Z0-9]{1,64}$")


def secret_prefix(connector: str) -> str:
    """``ONCEONLY_SECRET_<CONNECTOR>_``: the names the connector's secrets must begin with."""
    return f"{SECRET_PREFIX}{connector.upper().replace('-', '_')}_"


def secret_name_problem(connector: str, name: str) -> str | None:
    """Why ``name`` is not a secret name of ``connector`` (never quoting it: it may be a value
    written where a name belongs), or None."""
    prefix = secret_prefix(connector)
    if not name.startswith(prefix) or not _REST_RE.match(name[len(prefix) :]):
        return (
            f"a secret of connector {connector!r} must be named {prefix}<NAME> (<NAME>: upper-case "
            f"letters and digits, no '_'): the environment variable of that name or the Prefect Secret block "
            f"{PrefectSecrets.block_name(prefix)}<name>; what is written there is not repeated, in "
            "case it is a value"
        )
    return None


def _confined(name: str, connector: str) -> None:
    problem = secret_name_problem(connector, name)
    if problem:
        raise ConfigurationError(f"connector {connector!r}: {problem}")


class SecretResolver(Protocol):
    def resolve(self, name: str, *, connector: str) -> str: ...


class MissingSecret(ConfigurationError):
    pass


class EnvironmentSecrets:
    """Secrets from environment variables (the embedded default)."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._environ = os.environ if environ is None else environ

    def resolve(self, name: str, *, connector: str) -> str:
        _confined(name, connector)
        value = self._environ.get(name)
        if not value:
            raise MissingSecret(
                f"connector {connector!r}: secret {name!r} is not set (an environment variable "
                f"or Prefect Secret block of that name)"
            )
        return value


class PrefectSecrets:
    """Secrets from Prefect Secret blocks (``prefect block create secret``).

    Block names are lowercase with dashes, so the secret ``ONCEONLY_SECRET_SCJG_LICENCES_TOKEN``
    is the block ``onceonly-secret-scjg-licences-token``.
    """

    @staticmethod
    def block_name(name: str) -> str:
        return name.lower().replace("_", "-")

    def resolve(self, name: str, *, connector: str) -> str:
        from prefect.blocks.system import Secret

        _confined(name, connector)
        block = self.block_name(name)
        try:
            # _sync=True: the block, not a coroutine, even when called inside a running flow.
            secret = cast(Secret, Secret.load(block, _sync=True))  # type: ignore[call-arg]
        except ValueError as exc:
            raise MissingSecret(f"connector {connector!r}: no Prefect Secret block {block!r}") from exc
        except Exception as exc:  # the Prefect API itself may be unreachable
            raise MissingSecret(
                f"connector {connector!r}: could not ask Prefect for Secret block {block!r} "
                f"({type(exc).__name__})"
            ) from exc
        return str(secret.get())


class ChainedSecrets:
    """The first resolver that knows the name wins; if none does, the error says what each tried."""

    def __init__(self, *resolvers: SecretResolver) -> None:
        self._resolvers = resolvers

    def resolve(self, name: str, *, connector: str) -> str:
        _confined(name, connector)
        reasons: list[str] = []
        for resolver in self._resolvers:
            try:
                return resolver.resolve(name, connector=connector)
            except MissingSecret as exc:
                reasons.append(str(exc).removeprefix(f"connector {connector!r}: "))
        raise MissingSecret(
            f"connector {connector!r}: secret {name!r} not found: {'; '.join(reasons) or 'no resolver'}"
        )


__all__ = [
    "SECRET_PREFIX",
    "ChainedSecrets",
    "EnvironmentSecrets",
    "MissingSecret",
    "PrefectSecrets",
    "SecretResolver",
    "secret_name_problem",
    "secret_prefix",
]
