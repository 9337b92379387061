"""JSON from clients (HTTP bodies, Socket.IO packets), where nesting too deep for Python's
parser is malformed JSON: a ValueError, as a syntax error is.

`json` raises RecursionError instead, which `request.get_json(silent=True)` let through
(a 500), and which engine.io let end a WebSocket with an HTTP 500 written into its stream.
Has the `dumps` and `loads` that Flask-SocketIO's `json` option asks for.
"""

from __future__ import annotations

import json

dumps = json.dumps


def loads(s, **kwargs):
    try:
        return json.loads(s, **kwargs)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
