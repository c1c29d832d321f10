"""SMTP delivery: one connection per message, failures sorted into temporary (try again
later) and permanent (the server refused the message or its recipient for good)."""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass
from datetime import datetime
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from communication_service.messages import RenderedEmail

# CRLF line ends; long enough lines that a subject is not folded before its first word
SMTP_POLICY = policy.SMTP.clone(max_line_length=200)


class DeliveryFailed(Exception):
    """The message did not go out; `permanent` says whether trying again can help."""

    def __init__(self, error: str, *, permanent: bool) -> None:
        super().__init__(error)
        self.error = error
        self.permanent = permanent


@dataclass(frozen=True)
class Mailer:
    """Sends through one SMTP server (SMTP_HOST, SMTP_PORT, SMTP_STARTTLS, SMTP_USER)."""

    host: str
    port: int
    mail_from: str
    starttls: bool = False
    user: str | None = None
    password: str | None = None
    timeout_seconds: float = 30.0

    def compose(
        self, rendered: RenderedEmail, *, to: str, send_key: str, sent_at: datetime
    ) -> EmailMessage:
        """The MIME message: plain text with an HTML alternative, UTF-8."""
        message = EmailMessage(policy=SMTP_POLICY)
        message["Subject"] = rendered.subject
        message["From"] = self.mail_from
        message["To"] = to
        message["Date"] = format_datetime(sent_at)
        # the same cause always gets the same id: a receiver can tell a repeat
        message["Message-ID"] = make_msgid(
            idstring=send_key.replace(":", "."), domain="vermittlung"
        )
        message.set_content(rendered.text)
        message.add_alternative(rendered.html, subtype="html")
        return message

    def send(self, message: EmailMessage) -> None:
        """Deliver `message` or raise DeliveryFailed."""
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout_seconds) as smtp:
                if self.starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if self.user:
                    smtp.login(self.user, self.password or "")
                smtp.send_message(message)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            raise DeliveryFailed(
                f"SMTPRecipientsRefused {min(codes)}", permanent=min(codes) >= 500
            ) from None
        except smtplib.SMTPServerDisconnected as exc:
            raise DeliveryFailed(type(exc).__name__, permanent=False) from None
        except smtplib.SMTPResponseException as exc:
            raise DeliveryFailed(
                f"{type(exc).__name__} {exc.smtp_code}", permanent=exc.smtp_code >= 500
            ) from None
        except (smtplib.SMTPException, OSError) as exc:
            raise DeliveryFailed(type(exc).__name__, permanent=False) from None
