"""The portal's key form: scopes offered are the member's own, so a key is never wider."""

from __future__ import annotations

from django import forms
from django.utils import timezone

from gateway_project.core.roles import ROLE_SCOPES

__all__ = ["KeyForm"]


class KeyForm(forms.Form):
    name = forms.CharField(max_length=100, strip=True)
    scopes = forms.MultipleChoiceField(widget=forms.CheckboxSelectMultiple)
    expires_at = forms.DateTimeField(
        required=False, help_text="Optional, e.g. 2027-01-31 00:00; empty: never expires."
    )

    def __init__(self, *args, user, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        own = ROLE_SCOPES.get(user.role, [])
        self.fields["scopes"].choices = [(scope, scope) for scope in own]
        self.fields["scopes"].initial = own[:1]

    def clean_expires_at(self):
        expires_at = self.cleaned_data["expires_at"]
        if expires_at is not None and expires_at <= timezone.now():
            raise forms.ValidationError("Choose a moment in the future.")
        return expires_at
