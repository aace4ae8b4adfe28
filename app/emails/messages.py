"""The account emails: a plain-text part with the link, and the same as HTML."""

from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from html import escape


def _envelope(*, sender: str, to: str, subject: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2].strip("> ") or None)
    return message


def _message(*, sender: str, to: str, subject: str, lines: list[str], link: str) -> EmailMessage:
    message = _envelope(sender=sender, to=to, subject=subject)
    text = "\n\n".join([*lines[:1], link, *lines[1:]])
    message.set_content(text + "\n")
    paragraphs = "".join(f"<p>{escape(line)}</p>" for line in lines[1:])
    html = (
        f"<!doctype html><html><body><p>{escape(lines[0])}</p>"
        f'<p><a href="{escape(link)}">{escape(link)}</a></p>{paragraphs}</body></html>'
    )
    message.add_alternative(html, subtype="html")
    return message


def verification(*, sender: str, to: str, project: str, link: str, hours: int) -> EmailMessage:
    return _message(
        sender=sender,
        to=to,
        subject=f"Verify your email address for {project}",
        lines=[
            f"Please confirm that {to} is your address by opening this link:",
            f"The link works once and expires in {hours} hours.",
            f"If you did not sign up for {project}, ignore this email.",
        ],
        link=link,
    )


def password_reset(*, sender: str, to: str, project: str, link: str, minutes: int) -> EmailMessage:
    return _message(
        sender=sender,
        to=to,
        subject=f"Reset your {project} password",
        lines=[
            "Someone asked to reset the password of your account. To choose a new one, open:",
            f"The link works once, expires in {minutes} minutes, and only the newest link works.",
            "If it was not you, ignore this email: your password stays as it is.",
        ],
        link=link,
    )


def email_changed(*, sender: str, to: str, project: str, new: str) -> EmailMessage:
    """A security notice to the previous address: no link, nothing in it changes anything."""
    subject = f"The email address of your {project} account was changed"
    message = _envelope(sender=sender, to=to, subject=subject)
    message.set_content(
        f"The email address of your {project} account is now {new} instead of {to}.\n\n"
        "If you made this change, there is nothing to do. If you did not, someone who knows\n"
        f"your password has your account: contact {project}'s support at once.\n"
    )
    return message
