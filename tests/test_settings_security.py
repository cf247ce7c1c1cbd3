"""Kafka security settings: what each protocol hands to aiokafka and to faust."""

from __future__ import annotations

import ssl

import faust
import pytest
from pydantic import ValidationError

from streams.settings import KafkaSecurity, Settings


def test_plaintext_by_default_and_nothing_secret_to_hand_over() -> None:
    security = Settings().kafka
    assert security.aiokafka_kwargs() == {"security_protocol": "PLAINTEXT"}
    assert security.faust_credentials() is None


def test_sasl_needs_a_user_and_a_password_and_never_shows_the_password() -> None:
    with pytest.raises(ValidationError, match="sasl_username and kafka.sasl_password"):
        KafkaSecurity(security_protocol="SASL_SSL", sasl_username="svc")
    security = KafkaSecurity(security_protocol="SASL_PLAINTEXT", sasl_mechanism="SCRAM-SHA-512",
                             sasl_username="svc", sasl_password="hunter2")
    assert "hunter2" not in repr(security) and "hunter2" not in str(Settings(kafka=security))
    kwargs = security.aiokafka_kwargs()
    assert kwargs == {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "SCRAM-SHA-512",
                      "sasl_plain_username": "svc", "sasl_plain_password": "hunter2"}
    credentials = security.faust_credentials()
    assert isinstance(credentials, faust.SASLCredentials) and credentials.password == "hunter2"
    assert credentials.mechanism.value == "SCRAM-SHA-512" and credentials.ssl_context is None


def test_ssl_builds_one_verifying_context_for_every_client() -> None:
    security = KafkaSecurity(security_protocol="SASL_SSL", sasl_username="svc", sasl_password="pw")
    context = security.aiokafka_kwargs()["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    credentials = security.faust_credentials()
    assert credentials.protocol.value == "SASL_SSL" and isinstance(credentials.ssl_context, ssl.SSLContext)
    plain_ssl = KafkaSecurity(security_protocol="SSL", ssl_check_hostname=False)
    assert isinstance(plain_ssl.faust_credentials(), faust.SSLCredentials)
    assert plain_ssl.aiokafka_kwargs()["ssl_context"].check_hostname is False


def test_a_missing_ca_file_is_an_error_at_start_not_a_silent_fallback(tmp_path) -> None:  # noqa: ANN001
    security = KafkaSecurity(security_protocol="SSL", ssl_cafile=tmp_path / "missing.pem")
    with pytest.raises(FileNotFoundError):
        security.ssl_context()


def test_empty_environment_values_mean_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SEGSTREAM_WORKER__API_TOKEN", "SEGSTREAM_WORKER__GROUP_INSTANCE_ID", "SEGSTREAM_KAFKA__SASL_USERNAME",
                 "SEGSTREAM_KAFKA__SASL_PASSWORD", "SEGSTREAM_KAFKA__SSL_CAFILE"):
        monkeypatch.setenv(name, "")
    settings = Settings()
    assert settings.worker.api_token is None and settings.worker.group_instance_id is None
    assert settings.kafka.sasl_username is None and settings.kafka.ssl_cafile is None
