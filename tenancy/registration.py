"""Self-service registration that never tells a caller whether an address has an account.

`POST /api/v1/auth/register` answers the same 201 for a new and for a registered address and
writes nothing to the database: a new address gets a confirmation token by e-mail, a
registered one gets a note that someone tried to register it. The account (tenant, trial
subscription, user) is created by `POST /api/v1/auth/register/confirm` with that token and
the same password, which proves the caller both reads the mailbox and chose the password.
Both branches hash the password once and send one e-mail, so timing tells nothing either.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.hashers import check_password, make_password
from django.core.cache import cache
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.text import slugify

from tenancy.choices import Role, SubscriptionStatus
from tenancy.models import Subscription, Tenant, User

__all__ = [
    "PENDING_TTL_SECONDS",
    "TRIAL_DAYS",
    "PendingRegistration",
    "RegistrationError",
    "confirm_registration",
    "start_registration",
]

PENDING_TTL_SECONDS = 24 * 3600
TRIAL_DAYS = 14
TOKEN_BYTES = 32
SLUG_MAX_LENGTH = 40
TENANT_NAME_MAX_LENGTH = Tenant._meta.get_field("name").max_length
_KEY = "registration:"

CONFIRM_SUBJECT = "Confirm your gateway account"
CONFIRM_BODY = (
    "Someone (we hope you) asked for a gateway account for {email}.\n\n"
    "To create it, send within {hours} hours:\n\n"
    "  POST {confirm_url}\n"
    '  {{"token": "{token}", "password": "<the password you registered with>"}}\n\n'
    "The answer holds your access and refresh tokens. If it was not you, ignore this message."
)
EXISTING_SUBJECT = "Someone tried to register your address"
EXISTING_BODY = (
    "Someone asked for a new gateway account for {email}, which already has one.\n\n"
    "If it was you, log in at {login_url} with your password instead. "
    "If it was not you, you can ignore this message: nothing was changed."
)


@dataclass(frozen=True)
class PendingRegistration:
    """What a confirmation creates; held in the cache under the e-mailed token, never in the DB."""

    email: str
    password_hash: str
    tenant_name: str
    tenant_name_given: bool


def account_exists(email: str) -> bool:
    return User.objects.filter(Q(email__iexact=email) | Q(username__iexact=email)).exists()


def start_registration(pending_email: str, password: str, tenant_name: str | None, urls: dict) -> None:
    """Mail a confirmation token (new address) or a note (registered address); create nothing.

    `urls` holds the absolute `confirm` and `login` URLs the e-mails point to.
    """
    password_hash = make_password(password)  # in both branches: the same work, the same time
    if account_exists(pending_email):
        body = EXISTING_BODY.format(email=pending_email, login_url=urls["login"])
        _mail(pending_email, EXISTING_SUBJECT, body)
        return
    pending = PendingRegistration(
        email=pending_email,
        password_hash=password_hash,
        tenant_name=tenant_name or pending_email.split("@", 1)[1],
        tenant_name_given=bool(tenant_name),
    )
    token = secrets.token_urlsafe(TOKEN_BYTES)
    cache.set(_KEY + token, pending, PENDING_TTL_SECONDS)
    body = CONFIRM_BODY.format(
        email=pending_email,
        hours=PENDING_TTL_SECONDS // 3600,
        confirm_url=urls["confirm"],
        token=token,
    )
    _mail(pending_email, CONFIRM_SUBJECT, body)


def _mail(to: str, subject: str, body: str) -> None:
    send_mail(subject, body, from_email=settings.DEFAULT_FROM_EMAIL, recipient_list=[to])


class RegistrationError(Exception):
    """A confirmation that cannot create the account; the message is safe to show."""


def confirm_registration(token: str, password: str) -> User | None:
    """The new member user, or None for an unknown or expired token or another password.

    Raises RegistrationError when the tenant name chosen at registration was taken meanwhile.
    """
    pending = cache.get(_KEY + token) if token else None
    if not isinstance(pending, PendingRegistration) or not check_password(password, pending.password_hash):
        return None
    with transaction.atomic():
        if account_exists(pending.email):  # another confirmation for this address came first
            cache.delete(_KEY + token)
            return None
        user = _create_account(pending)
    cache.delete(_KEY + token)
    return user


def _create_account(pending: PendingRegistration) -> User:
    name = _tenant_name(pending)
    tenant = Tenant.objects.create(name=name, slug=_unique_slug(name))
    Subscription.objects.create(
        tenant=tenant,
        status=SubscriptionStatus.TRIALING,
        current_period_end=timezone.now() + timedelta(days=TRIAL_DAYS),
    )
    user = User(username=pending.email, email=pending.email, tenant=tenant, role=Role.MEMBER)
    user.password = pending.password_hash
    user.save()
    return user


def tenant_name_taken(name: str) -> bool:
    return Tenant.objects.filter(name__iexact=name).exists()


def _tenant_name(pending: PendingRegistration) -> str:
    """The chosen name (refused if taken), or the address's domain made unique with a suffix."""
    if pending.tenant_name_given:
        if tenant_name_taken(pending.tenant_name):
            raise RegistrationError("A tenant with this name already exists; register with another.")
        return pending.tenant_name
    name, suffix = pending.tenant_name[:TENANT_NAME_MAX_LENGTH], 1
    while tenant_name_taken(name):
        suffix += 1
        tail = f"-{suffix}"
        name = pending.tenant_name[: TENANT_NAME_MAX_LENGTH - len(tail)] + tail
    return name


def _unique_slug(name: str) -> str:
    base = slugify(name)[:SLUG_MAX_LENGTH] or "tenant"
    slug, suffix = base, 1
    while Tenant.objects.filter(slug=slug).exists():
        suffix += 1
        slug = f"{base}-{suffix}"
    return slug
