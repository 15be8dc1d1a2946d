"""The comment beside each field of a settings dataclass, as its description.

The stages' config dataclasses document every setting once, in a comment on
its line (``voxel: float = 0.03  # m, TSDF voxel size``); ROS parameter
descriptions and generated settings files take it from there, so there is
no second list of descriptions to keep in step."""

from __future__ import annotations

import inspect
import io
import textwrap
import tokenize
from functools import cache


@cache
def field_comments(cls) -> dict[str, str]:
    """field name -> the comment on its line, for the fields of class ``cls``
    written ``name: type = default  # comment`` (comment-only lines between
    fields describe groups of them, not one, and are left out)."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    out: dict[str, str] = {}
    current, line_start, depth = None, True, 0
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.INDENT:
            depth += 1
        elif tok.type == tokenize.DEDENT:
            depth -= 1
        elif tok.type == tokenize.NAME and line_start and depth == 1:
            current = tok.string
        elif tok.type == tokenize.COMMENT and current is not None:
            out[current] = tok.string.lstrip("#").strip()
        if tok.type in (tokenize.NEWLINE, tokenize.NL):
            line_start, current = True, None
        elif tok.type not in (tokenize.INDENT, tokenize.DEDENT, tokenize.COMMENT):
            line_start = False
    return out
