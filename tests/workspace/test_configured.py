"""The workspace's settings section and the workspace the settings build."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from monitor.alerts.store import AlertStore
from monitor.config import WorkspaceSettings, isolated_settings
from monitor.workspace import Workspace, configured_workspace

SECRET = "workspace-secret-for-tests-0123"


def test_the_workspace_is_off_by_default(tmp_path: Path) -> None:
    """Default settings build no workspace, with 15-minute links and 12-hour sessions ready."""
    settings = isolated_settings()
    assert settings.workspace.enabled is False
    assert settings.workspace.sign_in_max_age_seconds == 900
    assert settings.workspace.session_max_age_seconds == 12 * 3600
    with AlertStore(tmp_path / "alerts.db") as store:
        assert configured_workspace(settings, store, managers=dict) is None


def test_enabling_it_needs_a_long_secret_never_quoted() -> None:
    """Enabling without a secret, or with a short one, is refused and the error never quotes the value."""
    with pytest.raises(ValidationError, match="workspace.secret"):
        WorkspaceSettings(enabled=True)
    with pytest.raises(ValidationError) as short:
        WorkspaceSettings(enabled=True, secret="tooshort-s3cr3t")
    assert "tooshort-s3cr3t" not in str(short.value)
    assert SECRET not in repr(WorkspaceSettings(enabled=True, secret=SECRET))


def test_enabled_settings_build_the_workspace(tmp_path: Path) -> None:
    """Enabled settings build a workspace whose lifetimes are the configured ones."""
    settings = isolated_settings(workspace={"enabled": True, "secret": SECRET,
                                            "sign_in_max_age_seconds": 600,
                                            "session_max_age_seconds": 3600})
    with AlertStore(tmp_path / "alerts.db") as store:
        workspace = configured_workspace(settings, store, managers=dict)
        assert isinstance(workspace, Workspace)
        assert workspace.tokens.max_age_seconds == 600
        assert workspace.sessions.max_age_seconds == 3600
