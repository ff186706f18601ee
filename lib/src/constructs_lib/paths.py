"""A construct's path as its stack names it: ``DataPipeline-dev/Enricher``.

Descriptions say which construct a resource serves; a path from the stack's name on is the
same whether the stack sits in an app or in a pipeline's stage, so the template is too.
"""

from __future__ import annotations

from aws_cdk import Stack
from constructs import IConstruct


def stack_path(construct: IConstruct) -> str:
    """``construct``'s path from its stack's name on (``DataPipeline-dev/Enricher``)."""
    stack = Stack.of(construct)
    return stack.stack_name + construct.node.path[len(stack.node.path) :]
