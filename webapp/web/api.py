"""REST routes for the logged-in user: conversations, messages, memory, network stats.

Every query is scoped by the session's user id: another user's ids read exactly like
ids that do not exist (404). Memory operations go to the user's engine worker and wait
on it with a timeout; the web process never runs the network itself.
"""

from __future__ import annotations

import json
import time

from flask import Blueprint, Response, current_app, g, jsonify, request

from webapp.web.errors import ApiError
from webapp.web.services import services

bp = Blueprint("api", __name__, url_prefix="/api")

DEFAULT_LIMIT, MAX_LIMIT = 20, 200
MAX_EPISODE_ID = 2**63 - 1  # SQLite's largest integer: no episode has a larger id
IMPORT_TIMEOUT_SECONDS = 600.0  # an import drives the network over every episode
EPISODE_FIELDS = ("text", "role", "conversation_id", "timestamp", "importance",
                  "recall_count", "external_id")


def _engine(op: str, timeout: float = 30.0, **args):
    return services().engine.call(g.user["id"], op, timeout=timeout, **args)


@bp.get("/conversations")
def conversations():
    return jsonify({"conversations": services().store.list_conversations(g.user["id"])})


@bp.get("/conversations/<conversation_id>/messages")
def messages(conversation_id: str):
    store = services().store
    conversation = store.get_conversation(g.user["id"], conversation_id)
    if conversation is None:
        raise ApiError(404, "not_found", "No such conversation.")
    messages = services().turns.settle_interrupted(
        g.user["id"], store.list_messages(g.user["id"], conversation_id))
    return jsonify({"conversation": conversation, "messages": messages})


@bp.get("/memory")
def memory():
    """With q: recall with explanations. Without: the latest episodes, to browse."""
    query = request.args.get("q", "").strip()
    try:
        limit = int(request.args.get("limit", DEFAULT_LIMIT))
    except ValueError:
        raise ApiError(400, "bad_request", "limit must be a whole number.") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise ApiError(400, "bad_request", f"limit must be between 1 and {MAX_LIMIT}.")
    if query:
        found = _engine("recall", query=query, k=limit)
        return jsonify({"query": query, "query_tokens": found["query_tokens"],
                        "results": found["recalled"]})
    episodes = recent_episodes(services().store, g.user["id"], limit)
    return jsonify({"query": "", "results": [_episode_view(e) for e in episodes]})


def recent_episodes(store, user_id: int, limit: int) -> list[dict]:
    """The user's `limit` latest episodes, newest first, read without loading their network.

    Episode ids are shared by all users, so look back over a window of ids that grows
    until it holds enough of this user's episodes (each read is an index range scan).
    """
    last = store.last_episode_id(user_id)
    window = 4 * limit
    while True:
        after = max(0, last - window)
        episodes = list(store.iter_episodes(user_id, after_id=after))
        if len(episodes) >= limit or after == 0:
            return episodes[::-1][:limit]
        window *= 4


def _episode_view(episode: dict) -> dict:
    return {"episode_id": episode["id"], **{name: episode.get(name) for name in EPISODE_FIELDS}}


@bp.delete("/memory/<int:episode_id>")
def delete_memory(episode_id: int):
    if episode_id > MAX_EPISODE_ID or not _engine("delete", episode_id=episode_id)["deleted"]:
        raise ApiError(404, "not_found", "No such memory.")
    return jsonify({"deleted": episode_id})


@bp.get("/memory/export")
def export_memory():
    data = _engine("export", timeout=IMPORT_TIMEOUT_SECONDS)
    name = f"sornmemory-{g.user['username']}-{time.strftime('%Y%m%d')}.json"
    return Response(json.dumps(data, ensure_ascii=False), mimetype="application/json",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


@bp.post("/memory/import")
def import_memory():
    """A JSON body, or a multipart upload in field "file", as written by the export."""
    upload = request.files.get("file")
    try:
        data = current_app.json.load(upload.stream) if upload else request.get_json(silent=True)
    except (ValueError, UnicodeDecodeError):
        data = None
    if not isinstance(data, dict):
        raise ApiError(400, "bad_import", "The import must be a JSON object from an export.")
    return jsonify(_engine("import", timeout=IMPORT_TIMEOUT_SECONDS, data=data))


@bp.get("/network")
def network():
    return jsonify(_engine("stats"))
