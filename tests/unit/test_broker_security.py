"""Broker security settings: validated at start, mapped once, given to every Kafka client."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from patient_service.models import INFRA
from shared import consumer as consumer_module
from shared import kafka as kafka_module
from shared.kafka import kafka_client_options
from shared.runtime import ServiceRuntime
from shared.settings import ServiceSettings, load_settings

DATABASE_URL = "postgresql://patient_service@127.0.0.1:5432/placement"


def settings(**values: Any) -> ServiceSettings:
    return ServiceSettings(database_url=DATABASE_URL, service_name="patient_service", **values)


@pytest.fixture
def cafile(tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    path.write_text("-----BEGIN CERTIFICATE-----\n")
    return str(path)


def test_plaintext_is_the_default_and_maps_to_the_protocol_only() -> None:
    assert kafka_client_options(settings()) == {"security_protocol": "PLAINTEXT"}


def test_sasl_ssl_maps_to_kafka_python_options(cafile: str) -> None:
    options = kafka_client_options(
        settings(
            kafka_security_protocol="SASL_SSL",
            kafka_sasl_mechanism="SCRAM-SHA-512",
            kafka_sasl_username="patient_service",
            kafka_sasl_password="s3cret-broker-pw",
            kafka_ssl_cafile=cafile,
        )
    )
    assert options == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "patient_service",
        "sasl_plain_password": "s3cret-broker-pw",
        "ssl_cafile": cafile,
    }
    # kafka-python's admin client logs its whole configuration at DEBUG
    assert "s3cret-broker-pw" not in repr(options)
    assert "s3cret-broker-pw" not in repr(settings(kafka_security_protocol="SSL"))


def test_ssl_with_a_ca_file_maps_without_credentials(cafile: str) -> None:
    options = kafka_client_options(settings(kafka_security_protocol="ssl", kafka_ssl_cafile=cafile))
    assert options == {"security_protocol": "SSL", "ssl_cafile": cafile}


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"kafka_security_protocol": "SASL_SSL"}, "KAFKA_SASL_MECHANISM"),
        (
            {
                "kafka_security_protocol": "SASL_SSL",
                "kafka_sasl_mechanism": "PLAIN",
                "kafka_sasl_username": "patient_service",
            },
            "needs KAFKA_SASL_PASSWORD",
        ),
        ({"kafka_security_protocol": "TLS"}, "kafka_security_protocol"),
        ({"kafka_security_protocol": "SASL_SSL", "kafka_sasl_mechanism": "GSSAPI"}, "mechanism"),
        ({"kafka_sasl_password": "pw"}, "KAFKA_SASL_PASSWORD set, but"),
        ({"kafka_ssl_cafile": "/nonexistent/ca.pem"}, "no such file: /nonexistent/ca.pem"),
    ],
)
def test_incomplete_or_unknown_broker_security_is_refused(
    values: dict[str, Any], named: str
) -> None:
    with pytest.raises(ValidationError, match=named):
        settings(**values)


def test_refusal_at_start_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", DATABASE_URL)
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", "s3cret-broker-pw")
    monkeypatch.setenv("KAFKA_SSL_CAFILE", "/nonexistent/ca.pem")
    with pytest.raises(SystemExit) as exit_info:
        load_settings(ServiceSettings)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "KAFKA_SSL_CAFILE: Value error, no such file: /nonexistent/ca.pem" in err
    monkeypatch.delenv("KAFKA_SSL_CAFILE")
    with pytest.raises(SystemExit):
        load_settings(ServiceSettings)
    err = capsys.readouterr().err
    assert "KAFKA_SECURITY_PROTOCOL=SASL_SSL needs KAFKA_SASL_MECHANISM, KAFKA_SASL_USERNAME" in err
    assert "s3cret-broker-pw" not in err


def test_every_kafka_client_of_a_service_gets_the_security_options(
    monkeypatch: pytest.MonkeyPatch, cafile: str
) -> None:
    built: dict[str, dict[str, Any]] = {}

    class FakeClient:
        def __init__(self, name: str, *_topics: str, **config: Any) -> None:
            built[name] = config

        def list_topics(self) -> list[str]:
            return []

        def create_topics(self, _topics: Any) -> None:
            pass

        def subscribe(self, *_args: Any, **_kwargs: Any) -> None:
            pass

        def close(self, *_args: Any, **_kwargs: Any) -> None:
            pass

    for module, name in (
        (kafka_module, "KafkaAdminClient"),
        (kafka_module, "KafkaProducer"),
        (consumer_module, "KafkaConsumer"),
    ):
        monkeypatch.setattr(module, name, lambda *a, _n=name, **k: FakeClient(_n, *a, **k))
    runtime = ServiceRuntime.build(
        settings(
            kafka_security_protocol="SASL_SSL",
            kafka_sasl_mechanism="SCRAM-SHA-512",
            kafka_sasl_username="patient_service",
            kafka_sasl_password="s3cret-broker-pw",
            kafka_ssl_cafile=cafile,
        ),
        INFRA,
    )
    assert runtime.producer(["patient-events"]).ready()
    runtime.consumer(["search-events"], {})._consumer()
    assert set(built) == {"KafkaAdminClient", "KafkaProducer", "KafkaConsumer"}
    for config in built.values():
        assert config["security_protocol"] == "SASL_SSL"
        assert config["sasl_mechanism"] == "SCRAM-SHA-512"
        assert config["sasl_plain_username"] == "patient_service"
        assert config["sasl_plain_password"] == "s3cret-broker-pw"
        assert config["ssl_cafile"] == cafile
    runtime.database.dispose()
