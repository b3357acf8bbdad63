"""Reading the YAML people write (registrations, contracts, the matters catalogue), strictly.

Example::

    data, node = read_yaml(text, "gongan.yaml")   # the document, and its node tree for lines
    # YamlProblem("gongan.yaml: line 9: key 'table' appears twice (first at line 7)")

PyYAML's ``safe_load`` keeps the last of two equal keys without a word (a registration with
``table:`` twice pulls a table nobody reviewed), and recurses once per nesting level, so a
document nested some thousand levels deep ends in a ``RecursionError`` traceback without the
file's name. Here one loader, used by every reader of such files, refuses both with the file
and the line: a duplicate key names both lines; nesting deeper than :data:`MAX_DEPTH` and a
file larger than :data:`MAX_BYTES` are refused before anything is built, and so is a document
whose anchors and aliases expand to more than :data:`MAX_VALUES` values (a "billion laughs"
bomb: nine aliases of nine aliases … are a few hundred bytes that any code walking the
document visits 9⁹ times). Only plain YAML (``SafeLoader``: no Python tags); anchors and
aliases within the bound are kept as YAML defines them (an alias is one shared object).
"""

from __future__ import annotations

from typing import Any

import yaml

from onceonly.errors import ConfigurationError
from onceonly.privacy import scrub_digits

MAX_DEPTH = 64  # no file we read nests past a dozen levels
MAX_BYTES = 4 << 20  # the largest, the matters catalogue, is about 60 KB
MAX_VALUES = 1_000_000  # values once every alias is expanded (the catalogue: ~10,000)


class YamlProblem(ConfigurationError):
    """A YAML file that cannot be read: ``"<source>: line N: <problem>"``, its parts kept for
    callers whose messages take another form (a contract's ``file:line:``)."""

    def __init__(self, source: str, line: int | None, problem: str) -> None:
        self.source, self.line, self.problem = source, line, problem
        super().__init__(f"{source}: line {line}: {problem}" if line else f"{source}: {problem}")


class _Refused(yaml.MarkedYAMLError):
    """Valid YAML that we refuse (a duplicate key, too deep), at its mark."""


class _Strict(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys and nesting deeper than ``MAX_DEPTH``."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise _Refused(problem=f"nested deeper than {MAX_DEPTH} levels", problem_mark=mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, tuple[int, Any]] = {}
            for at, (key_node, _) in enumerate(node.value):
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    index, first = seen.setdefault(key, (at, key_node.start_mark))
                except TypeError:  # an unhashable key: SafeLoader refuses it below
                    continue
                if index != at:  # twice: on two lines, on one, or through one alias
                    where = f"line {first.line + 1}"
                    if first.line == key_node.start_mark.line:
                        where += f", column {first.column + 1}"
                    raise _Refused(
                        problem=f"key {key!r} appears twice (first at {where})",
                        problem_mark=key_node.start_mark,
                    )
        return super().construct_mapping(node, deep=deep)


def _expanded(node: yaml.Node, sizes: dict[int, int]) -> int:
    """How many values ``node`` holds once every alias is expanded (what code walking the
    constructed document visits), each shared node counted once per use but computed once."""
    known = sizes.get(id(node))
    if known is not None:
        return known
    size = 1
    if isinstance(node, yaml.SequenceNode):
        size += sum(_expanded(child, sizes) for child in node.value)
    elif isinstance(node, yaml.MappingNode):
        size += sum(_expanded(k, sizes) + _expanded(v, sizes) for k, v in node.value)
    sizes[id(node)] = size = min(size, MAX_VALUES + 1)
    return size


def read_yaml(text: str, source: str) -> tuple[Any, yaml.Node | None]:
    """The document in ``text`` and its composed node tree (for the line of a later problem);
    YamlProblem (``"<source>: line N: <problem>"``) for anything that is not plain, strict YAML."""
    if len(text) > MAX_BYTES:
        raise YamlProblem(source, None, f"larger than {MAX_BYTES >> 20} MiB; not a file we read")
    loader: _Strict | None = None
    try:
        loader = _Strict(text)  # reads the first characters: a control character fails here
        node = loader.get_single_node()
        if node is not None and _expanded(node, {}) > MAX_VALUES:
            raise YamlProblem(
                source,
                None,
                f"its anchors and aliases expand to more than {MAX_VALUES:,} values (a YAML bomb); "
                "write the values out",
            )
        data = loader.construct_document(node) if node is not None else None
    except _Refused as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark is not None else None
        raise YamlProblem(source, line, str(exc.problem)) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        raise YamlProblem(source, line, f"not valid YAML: {exc.problem or exc.context}") from None
    except yaml.reader.ReaderError as exc:  # a control character, or bytes that are no text
        raise YamlProblem(
            source, None, f"not valid YAML: character #x{exc.character:04x} at offset {exc.position}"
        ) from None
    except yaml.YAMLError as exc:
        raise YamlProblem(source, None, f"not valid YAML: {exc}") from None
    except (ValueError, OverflowError) as exc:  # a scalar YAML types but cannot build (2026-13-01)
        cause = scrub_digits(str(exc))[:200]  # it may quote the value: no ID in clear
        raise YamlProblem(source, None, f"a value cannot be read ({type(exc).__name__}: {cause})") from None
    except RecursionError:  # a structure the depth check did not see (an alias loop)
        raise YamlProblem(source, None, "nested too deep to read") from None
    finally:
        if loader is not None:
            loader.dispose()
    return data, node


__all__ = ["MAX_BYTES", "MAX_DEPTH", "MAX_VALUES", "YamlProblem", "read_yaml"]
