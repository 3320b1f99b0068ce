"""``qm-ingest doctor`` against the emulator: it finds what is wrong and says how to fix it;
``run`` refuses to start on a fatal problem."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import orjson

from processor.adapters.kinesis.put_records import put_records
from processor.ops.bootstrap import NOTIFICATION_ID
from processor.ops.doctor import Doctor, Finding, Severity, preflight
from processor.platform.exceptions import ConfigurationError

SECRET = "doctor-secret-value-9f8e7d"


def findings_for(settings, aws, subject: str) -> list[Finding]:
    return [f for f in Doctor(settings, aws).check_all() if f.subject == subject]


def severities(findings: list[Finding]) -> set[Severity]:
    return {f.severity for f in findings}


def test_a_bootstrapped_environment_has_no_fatal_problem(bootstrapped, aws) -> None:
    findings = Doctor(bootstrapped, aws).check_all()
    assert not findings.fatal_ones, findings.fatal_ones
    subjects = {f.subject for f in findings if f.severity is Severity.OK}
    s = bootstrapped
    for expected in (
        "aws endpoint",
        "aws credentials",
        f"kinesis stream {s.ctr_stream}",
        f"dynamodb table {s.join_table}",
        f"sqs queue {s.recordings_queue}",
        f"s3 notification {s.recordings_bucket} -> {s.recordings_queue}",
        "java",
        "kcl jars",
    ):
        assert expected in subjects, expected
    preflight(bootstrapped, aws)  # no exception


def test_missing_queue_is_fatal_with_the_fix(bootstrapped, aws) -> None:
    s = bootstrapped
    url = aws.sqs.get_queue_url(QueueName=s.recordings_queue)["QueueUrl"]
    aws.sqs.delete_queue(QueueUrl=url)
    [missing] = findings_for(s, aws, f"sqs queue {s.recordings_queue}")
    assert missing.severity is Severity.FATAL and missing.message == "does not exist"
    assert missing.fix is not None and "qm-ingest bootstrap" in missing.fix
    try:
        preflight(s, aws)
    except ConfigurationError as exc:
        assert f"sqs queue {s.recordings_queue}: does not exist" in str(exc)
    else:
        raise AssertionError("preflight let the service start without its queue")


def test_missing_notification_is_fatal(bootstrapped, aws) -> None:
    s = bootstrapped
    aws.s3.put_bucket_notification_configuration(Bucket=s.recordings_bucket, NotificationConfiguration={})
    [finding] = findings_for(s, aws, f"s3 notification {s.recordings_bucket} -> {s.recordings_queue}")
    assert finding.severity is Severity.FATAL
    assert "sends no ObjectCreated events" in finding.message
    assert finding.fix is not None and "bootstrap" in finding.fix


def test_notification_without_multipart_uploads_is_fatal(bootstrapped, aws) -> None:
    s = bootstrapped
    url = aws.sqs.get_queue_url(QueueName=s.recordings_queue)["QueueUrl"]
    arn = aws.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    aws.s3.put_bucket_notification_configuration(
        Bucket=s.recordings_bucket,
        NotificationConfiguration={
            "QueueConfigurations": [
                {"Id": NOTIFICATION_ID, "QueueArn": arn, "Events": ["s3:ObjectCreated:Put"]}
            ]
        },
    )
    [finding] = findings_for(s, aws, f"s3 notification {s.recordings_bucket} -> {s.recordings_queue}")
    assert finding.severity is Severity.FATAL
    assert "s3:ObjectCreated:CompleteMultipartUpload" in finding.message
    assert "s3:ObjectCreated:Put," not in finding.message.split("(")[0]
    # Both listed explicitly is as good as the wildcard.
    aws.s3.put_bucket_notification_configuration(
        Bucket=s.recordings_bucket,
        NotificationConfiguration={
            "QueueConfigurations": [
                {
                    "Id": NOTIFICATION_ID,
                    "QueueArn": arn,
                    "Events": ["s3:ObjectCreated:Put", "s3:ObjectCreated:CompleteMultipartUpload"],
                }
            ]
        },
    )
    [finding] = findings_for(s, aws, f"s3 notification {s.recordings_bucket} -> {s.recordings_queue}")
    assert finding.severity is Severity.OK


def test_queue_retention_and_dead_letter_settings(bootstrapped, aws) -> None:
    s = bootstrapped
    url = aws.sqs.get_queue_url(QueueName=s.recordings_queue)["QueueUrl"]
    aws.sqs.set_queue_attributes(
        QueueUrl=url, Attributes={"MessageRetentionPeriod": "3600", "VisibilityTimeout": "5"}
    )
    found = findings_for(s, aws, f"sqs queue {s.recordings_queue}")
    messages = " | ".join(f.message for f in found if f.severity is Severity.WARNING)
    assert "retention 1 h is shorter than the replay window of 24 h" in messages
    assert "visibility timeout 5 s" in messages
    dlq = aws.sqs.get_queue_url(QueueName=f"{s.recordings_queue}-dlq")["QueueUrl"]
    aws.sqs.delete_queue(QueueUrl=dlq)
    found = findings_for(s, aws, f"sqs queue {s.recordings_queue}")
    assert any(f.severity is Severity.FATAL and "dead-letter queue" in f.message for f in found)


def test_queue_without_dead_letter_queue_warns(settings, aws) -> None:
    from processor.ops.bootstrap import bootstrap

    aws.sqs.create_queue(
        QueueName=settings.recordings_queue, Attributes={"MessageRetentionPeriod": "1209600"}
    )
    bootstrap(settings, aws)  # leaves the existing queue as it is
    found = findings_for(settings, aws, f"sqs queue {settings.recordings_queue}")
    assert any(f.severity is Severity.WARNING and "no dead-letter queue" in f.message for f in found)


def test_stream_retention_against_the_replay_window(bootstrapped, aws, monkeypatch) -> None:
    from processor.platform.settings import Settings

    monkeypatch.setenv("QM_REPLAY_WINDOW_HOURS", "72")
    s = Settings()
    found = findings_for(s, aws, f"kinesis stream {s.ctr_stream}")
    warning = next(f for f in found if "retention" in f.message)
    assert warning.severity is Severity.WARNING
    assert "retention 24 h is shorter than the replay window of 72 h" in warning.message
    assert warning.fix is not None and "--retention-period-hours 72" in warning.fix
    aws.kinesis.increase_stream_retention_period(StreamName=s.ctr_stream, RetentionPeriodHours=72)
    found = findings_for(s, aws, f"kinesis stream {s.ctr_stream}")
    assert not any("retention" in f.message and f.severity is Severity.WARNING for f in found)


def test_join_table_without_ttl_warns(bootstrapped, aws) -> None:
    s = bootstrapped
    aws.dynamodb.update_time_to_live(
        TableName=s.join_table, TimeToLiveSpecification={"Enabled": False, "AttributeName": "expires_at"}
    )
    [finding] = findings_for(s, aws, f"dynamodb table {s.join_table}")
    assert finding.severity is Severity.WARNING and "TTL" in finding.message
    assert finding.fix is not None and "update-time-to-live" in finding.fix


def test_kms_encryption_of_stream_and_bucket(bootstrapped, aws) -> None:
    s = bootstrapped
    kms = aws.client("kms")
    key = kms.create_key(Description="qm-ingest test")["KeyMetadata"]["KeyId"]
    aws.kinesis.start_stream_encryption(StreamName=s.ctr_stream, EncryptionType="KMS", KeyId=key)
    aws.s3.put_bucket_encryption(
        Bucket=s.recordings_bucket,
        ServerSideEncryptionConfiguration={
            "Rules": [
                {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key}}
            ]
        },
    )
    # Empty stream and bucket: decryption cannot be proven yet, and the doctor says so.
    stream = findings_for(s, aws, f"kinesis stream {s.ctr_stream}")
    bucket = findings_for(s, aws, f"s3 bucket {s.recordings_bucket}")
    assert any(f.severity is Severity.UNKNOWN and "decryption is unproven" in f.message for f in stream)
    assert any(f.severity is Severity.UNKNOWN and "bucket is empty" in f.message for f in bucket)
    put_records(aws.kinesis, s.ctr_stream, [(b'{"probe": 1}', "k")])
    aws.s3.put_object(Bucket=s.recordings_bucket, Key="connect/x/CallRecordings/a.wav", Body=b"RIFF....")
    stream = findings_for(s, aws, f"kinesis stream {s.ctr_stream}")
    bucket = findings_for(s, aws, f"s3 bucket {s.recordings_bucket}")
    assert any(f.severity is Severity.OK and "read and decrypted" in f.message for f in stream)
    assert any(f.severity is Severity.OK and "read and decrypted" in f.message for f in bucket)
    kms.disable_key(KeyId=key)
    stream = findings_for(s, aws, f"kinesis stream {s.ctr_stream}")
    assert any(f.severity is Severity.FATAL and "is Disabled" in f.message for f in stream)


def test_java_and_jars(bootstrapped, aws, tmp_path: Path) -> None:
    bad = bootstrapped.model_copy(update={"java": str(tmp_path / "no-java"), "kcl_jars_dir": str(tmp_path)})
    doctor = Doctor(bad, aws)
    doctor.check_java()
    doctor.check_jars()
    java, jars = doctor.findings
    assert java.severity is Severity.FATAL and java.fix is not None and "QM_JAVA" in java.fix
    assert jars.severity is Severity.FATAL and "QM_KCL_JARS_DIR" in (jars.fix or "")


def test_unreachable_endpoint_is_fatal_and_quick(bootstrapped) -> None:
    from processor.devtools.emulator.control import free_port

    away = bootstrapped.model_copy(update={"aws_endpoint_url": f"http://127.0.0.1:{free_port()}"})
    started = time.monotonic()
    findings = Doctor(away).check_all()
    assert time.monotonic() - started < 20
    [endpoint] = [f for f in findings if f.subject == "aws endpoint"]
    assert endpoint.severity is Severity.FATAL and "qm-ingest local up" in (endpoint.fix or "")


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "processor", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_cli_exit_status_output_and_no_secrets(bootstrapped, aws) -> None:
    env = {**os.environ, "QM_CONSOLE_PASSWORD": SECRET, "AWS_SECRET_ACCESS_KEY": SECRET, "QM_CTR_STREEM": "x"}
    ok = cli("doctor", env=env)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "0 fatal" in ok.stdout
    assert "QM_CTR_STREEM is not a setting" in ok.stdout and "did you mean QM_CTR_STREAM?" in ok.stdout
    url = aws.sqs.get_queue_url(QueueName=bootstrapped.recordings_queue)["QueueUrl"]
    aws.sqs.delete_queue(QueueUrl=url)
    bad = cli("doctor", env=env)
    assert bad.returncode == 1
    assert f"FATAL    sqs queue {bootstrapped.recordings_queue}: does not exist" in bad.stdout
    assert "fix: run `qm-ingest bootstrap`" in bad.stdout
    as_json = cli("doctor", "--json", env=env)
    rows = [orjson.loads(line) for line in as_json.stdout.splitlines()]
    assert {"subject", "severity", "message"} <= set(rows[0])
    assert any(
        r["severity"] == "fatal" and r["subject"] == f"sqs queue {bootstrapped.recordings_queue}"
        for r in rows
    )
    for done in (ok, bad, as_json):
        assert SECRET not in done.stdout + done.stderr


def test_run_refuses_to_start_on_a_fatal_problem(bootstrapped, aws, tmp_path: Path) -> None:
    url = aws.sqs.get_queue_url(QueueName=bootstrapped.recordings_queue)["QueueUrl"]
    aws.sqs.delete_queue(QueueUrl=url)
    started = time.monotonic()
    done = cli("run", env={**os.environ, "QM_HEALTH_PORT": "0"})
    assert done.returncode == 1
    assert time.monotonic() - started < 60
    assert "refusing to start" in done.stderr
    assert (
        f"sqs queue {bootstrapped.recordings_queue}: does not exist (fix: run `qm-ingest bootstrap`"
        in done.stderr
    )


def test_follow_mode_checks_the_archive_instead_of_the_ctr_stream(bootstrapped, aws) -> None:
    from processor.ops.bootstrap import ARCHIVE_NOTIFICATION_ID
    from processor.platform.settings import CtrSource

    s = bootstrapped.model_copy(update={"ctr_source": CtrSource.FIREHOSE_S3})
    aws.kinesis.delete_stream(StreamName=s.ctr_stream)  # not read in follow mode
    findings = Doctor(s, aws).check_all()
    assert not findings.fatal_ones, findings.fatal_ones
    ok = {f.subject: f.message for f in findings if f.severity is Severity.OK}
    assert ok[f"kinesis stream {s.ctr_stream}"] == "not read: QM_CTR_SOURCE=firehose-s3"
    assert f"s3 notification {s.archive_bucket} -> {s.archive_queue}" in ok
    # Without the archive's notification, new Firehose objects would never be imported.
    config = aws.s3.get_bucket_notification_configuration(Bucket=s.archive_bucket)
    rules = [q for q in config.get("QueueConfigurations", []) if q.get("Id") != ARCHIVE_NOTIFICATION_ID]
    aws.s3.put_bucket_notification_configuration(
        Bucket=s.archive_bucket, NotificationConfiguration={"QueueConfigurations": rules}
    )
    [finding] = findings_for(s, aws, f"s3 notification {s.archive_bucket} -> {s.archive_queue}")
    assert finding.severity is Severity.FATAL and "never imported" in finding.message
    # In stream mode a missing cursor table only warns (backfill needs it, `run` does not).
    aws.dynamodb.delete_table(TableName=s.archive_cursor_table)
    [cursor] = findings_for(bootstrapped, aws, f"dynamodb table {s.archive_cursor_table}")
    assert cursor.severity is Severity.WARNING


def test_extra_recordings_buckets_are_checked_like_the_recordings_bucket(bootstrapped, aws) -> None:
    gone, kept = "qm-doctor-gone-recordings", "qm-doctor-old-recordings"
    s = bootstrapped.model_copy(update={"recordings_extra_buckets": f"{gone}, {kept}"})
    aws.s3.create_bucket(Bucket=kept)
    findings = Doctor(s, aws).check_all()
    [missing] = [f for f in findings if f.subject == f"s3 bucket {gone}"]
    assert missing.severity is Severity.FATAL and missing.message == "does not exist"
    assert missing.fix is not None and "QM_RECORDINGS_EXTRA_BUCKETS" in missing.fix
    there = [f for f in findings if f.subject == f"s3 bucket {kept}"]
    assert there and Severity.FATAL not in severities(there), there
    assert any("answers 404" in f.message for f in there), there
    try:
        preflight(s, aws)
    except ConfigurationError as exc:
        assert f"s3 bucket {gone}: does not exist" in str(exc)
    else:
        raise AssertionError("run would start while a recordings bucket it may read is gone")
