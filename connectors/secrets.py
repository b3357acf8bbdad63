"""Resolve secrets by name at the last moment; values are never stored or logged.

Example::

    resolver = EnvironmentSecrets()                    # or PrefectSecrets(), or ChainedSecrets(...)
    password = resolver.resolve("GONGAN_DB_PASSWORD", connector="gongan-household")

Registration files hold secret NAMES. A missing secret is a clear, terminal error naming the
connector and the secret's name — never its value.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Protocol, cast

from onceonly.errors import ConfigurationError


class SecretResolver(Protocol):
    def resolve(self, name: str, *, connector: str) -> str: ...


class MissingSecret(ConfigurationError):
    pass


class EnvironmentSecrets:
    """Secrets from environment variables (the embedded default)."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._environ = os.environ if environ is None else environ

    def resolve(self, name: str, *, connector: str) -> str:
        value = self._environ.get(name)
        if not value:
            raise MissingSecret(
                f"connector {connector!r}: secret {name!r} is not set (an environment variable "
                f"or Prefect Secret block of that name)"
            )
        return value


class PrefectSecrets:
    """Secrets from Prefect Secret blocks (``prefect block create secret``).

    Block names are lowercase with dashes, so the secret ``SCJG_API_TOKEN`` is the block
    ``scjg-api-token``.
    """

    @staticmethod
    def block_name(name: str) -> str:
        return name.lower().replace("_", "-")

    def resolve(self, name: str, *, connector: str) -> str:
        from prefect.blocks.system import Secret

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
        reasons: list[str] = []
        for resolver in self._resolvers:
            try:
                return resolver.resolve(name, connector=connector)
            except MissingSecret as exc:
                reasons.append(str(exc).removeprefix(f"connector {connector!r}: "))
        raise MissingSecret(
            f"connector {connector!r}: secret {name!r} not found: {'; '.join(reasons) or 'no resolver'}"
        )


__all__ = ["ChainedSecrets", "EnvironmentSecrets", "MissingSecret", "PrefectSecrets", "SecretResolver"]
