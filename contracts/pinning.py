"""Connector ↔ contract version pinning: a connector runs only against the major it was tested with.

Example (``connectors/registrations/gongan-household.yaml``)::

    dataset: household
    contract: {major: 1}                   # tested against household 1.x.y

    contract: {major: 1, accept_major: 2}  # explicitly allowed to run against 2.x.y as well

``require_pinned_major(registration, contract)`` is called where the flow picks the contract:
a contract whose major version is neither the pinned one nor the explicitly accepted one
stops that connector with a ``ConfigurationError`` saying what to do. A major version is the
contract author's statement that the change is breaking (``onceonly contracts diff``).
"""

from __future__ import annotations

import logging
from typing import Protocol

from contracts.model import Contract
from onceonly.errors import ConfigurationError

_log = logging.getLogger(__name__)


class _Pin(Protocol):
    """A registration's ``contract`` field (``connectors.registration.ContractPin``)."""

    @property
    def major(self) -> int: ...
    @property
    def accept_major(self) -> int | None: ...


class _Registered(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def contract(self) -> _Pin | None: ...


def require_pinned_major(registration: _Registered, contract: Contract) -> None:
    """Raise unless the registration's pin (or its explicit ``accept_major``) matches ``contract``."""
    pin = registration.contract
    if pin is None:
        _log.warning(
            "connector %r names no contract major version; pin it with `contract: {major: %d}`",
            registration.name,
            contract.major,
        )
        return
    if contract.major == pin.major:
        return
    if pin.accept_major is not None and contract.major == pin.accept_major:
        _log.warning(
            "connector %r was tested against %s major %d; running against %s because its registration "
            "accepts major %d",
            registration.name,
            contract.id,
            pin.major,
            contract.ref,
            pin.accept_major,
        )
        return
    raise ConfigurationError(
        f"connector {registration.name!r} was tested against contract {contract.id!r} major version "
        f"{pin.major}, but {contract.source} is {contract.ref}: test the connector against it and set "
        f"`contract: {{major: {contract.major}}}` in its registration, or accept it explicitly with "
        f"`contract: {{major: {pin.major}, accept_major: {contract.major}}}`"
    )


__all__ = ["require_pinned_major"]
