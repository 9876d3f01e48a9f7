"""E-mail: the mail of each action, composed to be sent.

- :mod:`~actionlinks.mail.templates`: subject, text and HTML per action
  (Jinja2; overridable from the home).
- :mod:`~actionlinks.mail.message`: one ``multipart/alternative`` message with
  its headers, addresses checked.

Sending (aiosmtplib) through the outbox comes next.
"""

from actionlinks.mail.message import check_address, compose
from actionlinks.mail.templates import MailTemplates, RenderedMail

__all__ = ["MailTemplates", "RenderedMail", "check_address", "compose"]
