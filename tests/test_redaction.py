"""secret_values finds every piece of a credential a message could quote; redact hides them."""

from __future__ import annotations

import base64
import json
import urllib.parse

import pytest

from stackql_inventory.services.errors import REDACTED, redact, secret_values

PEM = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----\n"
SERVICE_ACCOUNT = json.dumps({"type": "service_account", "private_key": PEM, "client_email": "bot@proj.iam.example",
                              "nested": {"list": ["tok-0123456789abcdef"]}})


@pytest.mark.parametrize("message, hidden", [
    ("auth failed for wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
    ("bad key line MIIEvQIBADANBgkqhkiG9w0BAQEFAASC in file", "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC"),
    ("the key as JSON text: MIIEvQIBADANBgkqhkiG9w0BAQEFAASC\\n-----END", "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC"),
    ("account bot@proj.iam.example is disabled", "bot@proj.iam.example"),
    ("token tok-0123456789abcdef expired", "tok-0123456789abcdef"),
    ("second line second-line-secret of a multi-line value", "second-line-secret"),
])
def test_every_piece_a_message_could_quote_is_hidden(message, hidden):
    env = {
        "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        "GOOGLE_CREDENTIALS": SERVICE_ACCOUNT,
        "MULTI": "first-line-secret\r\nsecond-line-secret",
    }
    shown = redact(message, secret_values(env))
    assert hidden not in shown and REDACTED in shown


def test_short_pieces_and_no_credentials_hide_nothing_else():
    assert secret_values(None) == [] and secret_values({}) == []
    found = secret_values({"A": "ab\ncd"})  # lines under 8 characters are too common to hide on their own
    assert found == ["ab\ncd"]
    assert redact("ab and cd stay", found) == "ab and cd stay"


def test_encoded_forms_of_a_credential_are_redacted_too():
    token, user = "ghp_abcd/efgh+1234=xyz", "octocat"
    pem = "-----BEGIN KEY-----\nMIIEvQIBADANBgkqhkiG9w0B\n-----END KEY-----"
    values = secret_values({"STACKQL_GITHUB_USERNAME": user, "STACKQL_GITHUB_PASSWORD": token, "KEY": pem})
    basic = base64.b64encode(f"{user}:{token}".encode()).decode()
    echoed = (f"GET /user?access_token={urllib.parse.quote(token, safe='')} -> 401; "
              f"Authorization: Basic {basic}; token b64 {base64.b64encode(token.encode()).decode()}; "
              f"body {json.dumps({'key': pem})}")
    out = redact(echoed, values)
    assert token not in out and urllib.parse.quote(token, safe="") not in out
    assert basic.rstrip("=") not in out and base64.b64encode(token.encode()).decode().rstrip("=") not in out
    assert json.dumps(pem)[1:-1] not in out and "MIIEvQIBADANBgkqhkiG9w0B" not in out
    assert out.count("[REDACTED]") >= 4 and out.startswith("GET /user?access_token=[REDACTED] -> 401")
