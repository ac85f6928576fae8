"""YAML loading with a size budget: alias bombs ("billion laughs") are refused before they expand.

``yaml.safe_load`` builds an aliased node once and shares it, so the bomb itself loads at once;
everything that then walks the result (``${VAR}`` substitution, validation) sees it expanded, a
billion nodes from a 1 KB file. :func:`load_yaml` composes the node graph, counts the nodes it
would have expanded (each shared node is counted once per reference, in linear time), and
refuses documents beyond :data:`MAX_NODES` or nested deeper than :data:`MAX_DEPTH`.
"""

from __future__ import annotations

from typing import Any

import yaml

__all__ = ["MAX_DEPTH", "MAX_NODES", "YamlTooLarge", "load_yaml"]

#: A registry of 10,000 cameras with regions and detector settings spelled out is ~570,000 nodes.
MAX_NODES = 1_000_000
#: PyYAML composes recursively: refuse deeper nesting before Python's recursion limit is hit.
MAX_DEPTH = 200


class YamlTooLarge(ValueError):
    """A document that would expand beyond the budget (an alias bomb, or absurdly large)."""


class _BudgetLoader(yaml.SafeLoader):
    """SafeLoader that refuses nesting deeper than :data:`MAX_DEPTH` while composing."""

    _depth = 0

    def compose_node(self, parent, index):
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise YamlTooLarge(f"YAML nested more than {MAX_DEPTH} levels deep (line {mark.line + 1})")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _expanded_size(root: yaml.Node, limit: int) -> int:
    """Nodes in ``root`` with every alias expanded; stops counting once over ``limit``."""
    size: dict[int, int] = {}
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        if id(node) in size:
            continue
        if isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        elif isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        else:
            size[id(node)] = 1
            continue
        if children_done:
            size[id(node)] = min(limit + 1, 1 + sum(size[id(c)] for c in children))
        else:
            stack.append((node, True))
            stack.extend((c, False) for c in children if id(c) not in size)
    return size[id(root)]


def load_yaml(text: str, max_nodes: int = MAX_NODES) -> Any:
    """Like ``yaml.safe_load`` (one document, None when empty), but refuses documents that would
    expand to more than ``max_nodes`` nodes through aliases or nest deeper than :data:`MAX_DEPTH`
    (:class:`YamlTooLarge`). Syntax errors raise ``yaml.YAMLError`` as usual."""
    loader = _BudgetLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        size = _expanded_size(node, max_nodes)
        if size > max_nodes:
            raise YamlTooLarge(f"YAML expands to more than {max_nodes:,} nodes through its aliases "
                               "(an alias bomb?); refused")
        return loader.construct_document(node)
    finally:
        loader.dispose()
