"""The relationship managers' workspace: sign-in without passwords, sessions, and their pages.

Foundations first, pages above them:

====================  ==============================================================
module                concern
====================  ==============================================================
``tokens``            sign-in tokens: signed, short-lived, bound to a manager (single use is
                      recorded in the alert store)
``sessions``          sessions (random ID in a cookie, stored hashed, expiring, revocable)
                      and their CSRF tokens
``roles``             who may sign in and in which roles: managers of the registry, team
                      leads and operations staff of the settings
``returning``         where a sign-in returns to: a safe ``next`` path inside the workspace
``mailer``            finds a person (registry or operations) and mails them a sign-in link
``throttle``          how often sign-in links may be asked for (per person, per address)
``outcomes``          the labels of the resolution outcomes a manager chooses from
``words``             the store's vocabulary (severities, states...) marked for the catalogues
``web``               what every page shares: the :class:`Workspace`, rendering, the session,
                      CSRF checks and the usual answers
``access``            who may see what, by role (anything else answers 404)
``signing_in``        the sign-in routes: ask for a link, use it once, sign out
``alert_pages``       the alert routes: the list, one alert, acknowledge and resolve
``client_pages``      one client's alerts and failures of the last 90 days
``live``              live updates of the list: the server-sent event stream and its script
                      (``static/live.js``)
``team_pages``        a team lead's page: alerts waiting and time to acknowledge, by manager
``operations_pages``  operations' pages: incidents, one incident, terminals (no client names)
``pages``             the ``/workspace`` sub-application and its route table (jinja2 templates
                      in ``templates/``)
``configured``        the workspace the settings enable
====================  ==============================================================

``docs/workspace.md`` states each guarantee and its limit.
"""

from monitor.workspace.configured import configured_workspace
from monitor.workspace.mailer import SignInMailer
from monitor.workspace.outcomes import OUTCOME_LABELS
from monitor.workspace.pages import build_workspace
from monitor.workspace.sessions import Session, Sessions
from monitor.workspace.tokens import InvalidSignInError, SignInClaim, SignInTokens
from monitor.workspace.web import SESSION_COOKIE, Workspace

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
