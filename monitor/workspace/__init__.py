"""The relationship managers' workspace: sign-in without passwords, sessions, and their pages.

Foundations first, pages above them:

=============  ======================================================================
module         concern
=============  ======================================================================
``tokens``     sign-in tokens: signed, short-lived, bound to a manager (single use is
               recorded in the alert store)
``sessions``   sessions (random ID in a cookie, stored hashed, expiring, revocable)
               and their CSRF tokens
``mailer``     finds a manager in the registry and mails them a sign-in link
``outcomes``   the labels of the resolution outcomes a manager chooses from
``pages``      the ``/workspace`` routes (jinja2 templates in ``templates/``)
``configured`` the workspace the settings enable
=============  ======================================================================

``docs/workspace.md`` states each guarantee and its limit.
"""

from monitor.workspace.configured import configured_workspace
from monitor.workspace.mailer import SignInMailer
from monitor.workspace.outcomes import OUTCOME_LABELS
from monitor.workspace.pages import SESSION_COOKIE, Workspace, build_workspace
from monitor.workspace.sessions import Session, Sessions
from monitor.workspace.tokens import InvalidSignInError, SignInClaim, SignInTokens

__all__ = [
    "OUTCOME_LABELS",
    "SESSION_COOKIE",
    "InvalidSignInError",
    "Session",
    "Sessions",
    "SignInClaim",
    "SignInMailer",
    "SignInTokens",
    "Workspace",
    "build_workspace",
    "configured_workspace",
]
