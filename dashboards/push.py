"""Upload the generated dashboards to a running Grafana, idempotently (``cardmon dashboards push``).

Uses ``grafana-client`` (the maintained successor of the archived ``grafana-api``)
against Grafana's HTTP API:

1. ``GET /api/folders``: find the target folder by UID, else by title;
2. ``POST /api/folders``: create it (with a UID derived from its title) only if missing;
3. ``POST /api/dashboards/db``: each ``dashboards/json/*.json`` with ``overwrite: true``
   and the folder UID. Grafana matches an existing dashboard by its ``uid``, so a
   second push replaces the dashboards (new version) instead of adding copies.

Authentication is a service-account token (``GRAFANA_TOKEN``, or the older
``GRAFANA_API_KEY``) sent as ``Authorization: Bearer``, or basic credentials in the
URL (``http://user:password@host:3000``). A Grafana that already *provisions* these
UIDs from files (docker-compose.yml) refuses API writes to them: push is for a
Grafana you do not provision.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from grafana_client.api import GrafanaApi
from grafana_client.client import GrafanaException
from niquests.exceptions import RequestException

from dashboards._constants import JSON_DIR

__all__ = ["TOKEN_VARIABLES", "PushError", "PushResult", "folder_uid_for", "push", "token_from_env"]

#: Environment variables read for the token, first set wins.
TOKEN_VARIABLES: Final = ("GRAFANA_TOKEN", "GRAFANA_API_KEY")
#: Grafana folder UIDs: at most 40 characters of ``[A-Za-z0-9_-]``.
_UID_MAX: Final = 40
_DEFAULT_MESSAGE: Final = "cardmon dashboards push"
#: What grafana-client raises: refused requests, and (unwrapped) connection errors of
#: its HTTP library niquests.
_ERRORS: Final = (GrafanaException, RequestException)


class PushError(Exception):
    """Grafana refused a request or could not be reached; the message says which step."""


@dataclass(frozen=True, slots=True)
class PushResult:
    """What a push did.

    Attributes:
        folder_uid: UID of the folder the dashboards are in.
        folder_created: whether this push created the folder.
        dashboards: UID → Grafana URL path of each dashboard uploaded, in file-name order.
    """

    folder_uid: str
    folder_created: bool
    dashboards: dict[str, str]


def token_from_env(environ: Mapping[str, str] | None = None) -> str | None:
    """The Grafana token from ``GRAFANA_TOKEN`` or else ``GRAFANA_API_KEY``.

    Args:
        environ: the environment (``os.environ`` by default).

    Returns:
        The token, or ``None`` when neither variable is set and non-empty.
    """
    environ = os.environ if environ is None else environ
    for name in TOKEN_VARIABLES:
        value = environ.get(name, "").strip()
        if value:
            return value
    return None


def folder_uid_for(title: str) -> str:
    """A stable folder UID from a folder title: lower-case, ``-`` for other characters.

    Args:
        title: the folder title, e.g. ``"cardmon / Operations"``.

    Returns:
        E.g. ``"cardmon-operations"`` (at most 40 characters).

    Raises:
        ValueError: the title has no letter or digit.
    """
    uid = re.sub(r"[^a-z0-9_]+", "-", title.lower()).strip("-")[:_UID_MAX].strip("-")
    if not uid:
        raise ValueError(f"folder title {title!r} has no letter or digit to build a UID from")
    return uid


def _load(directory: Path) -> list[dict[str, Any]]:
    paths = sorted(directory.glob("*.json"))
    if not paths:
        raise PushError(f"no dashboard JSON in {directory}: run python -m dashboards.build")
    documents = []
    for path in paths:
        document = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(document, dict) or not document.get("uid"):
            raise PushError(f"{path} is not a dashboard with a uid")
        documents.append(document)
    return documents


def _ensure_folder(api: GrafanaApi, title: str, uid: str) -> tuple[str, bool]:
    try:
        folders: list[dict[str, Any]] = api.folder.get_all_folders()  # type: ignore[no-untyped-call]
    except _ERRORS as error:
        raise PushError(f"listing Grafana folders failed: {error}") from error
    for folder in folders:  # the UID is authoritative; a same-titled folder is reused
        if folder.get("uid") == uid:
            return uid, False
    for folder in folders:
        if folder.get("title") == title:
            return str(folder["uid"]), False
    try:
        created: dict[str, Any] = api.folder.create_folder(title, uid=uid)  # type: ignore[no-untyped-call]
    except _ERRORS as error:
        raise PushError(f"creating Grafana folder {title!r} ({uid}) failed: {error}") from error
    return str(created.get("uid", uid)), True


def push(
    url: str, token: str | None, *, folder: str = "cardmon", folder_uid: str | None = None,
    directory: Path = JSON_DIR, message: str = _DEFAULT_MESSAGE, timeout: float = 10.0,
) -> PushResult:
    """Upload every dashboard of ``directory`` into a Grafana folder, overwriting by UID.

    Running it twice leaves Grafana as after one run (plus a dashboard version):
    the folder is created only when missing, dashboards keep their UIDs.

    Args:
        url: Grafana base URL, e.g. ``http://127.0.0.1:3000`` (may carry ``user:password@``).
        token: service-account token (``Bearer``); ``None`` uses the URL's credentials
            or none.
        folder: folder title.
        folder_uid: folder UID; default :func:`folder_uid_for` of ``folder``.
        directory: folder of generated dashboard JSON.
        message: the version message Grafana stores with each dashboard.
        timeout: seconds per HTTP request.

    Returns:
        The :class:`PushResult`.

    Raises:
        PushError: no JSON to push, Grafana unreachable, a request refused (401 bad
            token, 403 missing permission, 412 a provisioned dashboard...).
        ValueError: ``folder`` has no letter or digit and no ``folder_uid`` is given.
    """
    documents = _load(directory)
    uid = folder_uid or folder_uid_for(folder)
    api = GrafanaApi.from_url(url, credential=token, timeout=timeout)
    try:
        target_uid, created = _ensure_folder(api, folder, uid)
        uploaded: dict[str, str] = {}
        for document in documents:
            # id None: Grafana looks the dashboard up by uid (update) or creates it.
            payload = {"dashboard": {**document, "id": None}, "folderUid": target_uid,
                       "overwrite": True, "message": message}
            try:
                response: dict[str, Any] = api.dashboard.update_dashboard(payload)
            except _ERRORS as error:
                raise PushError(f"uploading dashboard {document['uid']} failed: {error}") from error
            uploaded[str(document["uid"])] = str(response.get("url", ""))
    finally:
        api.client.s.close()
    return PushResult(target_uid, created, uploaded)
