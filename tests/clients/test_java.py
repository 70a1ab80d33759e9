"""Round trip through the Apache Kafka Java client (kafka-clients 4.3.1).

The work is done by tests/clients/java/src/ClientCheck.java (compiled into
.deps/java-classes by scripts/setup-test-deps.sh): it creates topics with the
Java AdminClient, produces and consumes every codec, verifies every record and
prints a one-line JSON summary. This test runs it, checks the exit status and
the summary, and cross-checks the topics' watermarks with confluent-kafka.
"""

import json
import shutil
import subprocess
import uuid

import pytest

from clientlib import CODECS, PARTITIONS, RECORDS_PER_CODEC, REPO_ROOT

CLASSES = REPO_ROOT / ".deps/java-classes"
JARS = REPO_ROOT / ".deps/java"


def test_java_client_roundtrip(broker):
    java = shutil.which("java")
    if java is None:
        pytest.fail("java not found", pytrace=False)
    if not (CLASSES / "ClientCheck.class").exists() or not any(JARS.glob("kafka-clients-*.jar")):
        pytest.fail("Java client not set up: run scripts/setup-test-deps.sh", pytrace=False)

    prefix = f"hw-java-{uuid.uuid4().hex[:8]}"
    cmd = [java, "-Xmx512m", "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
           "-cp", f"{CLASSES}:{JARS}/*", "ClientCheck",
           "--bootstrap", broker.bootstrap, "--records", str(RECORDS_PER_CODEC),
           "--codecs", ",".join(CODECS), "--prefix", prefix]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    lines = out.stdout.strip().splitlines()
    assert lines, f"no output from ClientCheck (exit {out.returncode}):\n{out.stderr[-5000:]}"
    summary = json.loads(lines[-1])
    detail = json.dumps(summary, indent=1)[:6000] + "\n--- stderr ---\n" + out.stderr[-4000:]

    assert summary["client"] == "java" and summary["kafka_clients"] == "4.3.1", detail
    assert summary["errors"] == [], detail
    assert summary["ok"] is True, detail
    assert out.returncode == 0, detail
    assert summary["records_per_codec"] == RECORDS_PER_CODEC
    assert sorted(summary["codecs"]) == sorted(CODECS), detail
    for codec, r in summary["codecs"].items():
        assert r["ok"] is True, f"{codec}: {detail}"
        assert r["problems"] == [] and r["mismatches"] == 0, f"{codec}: {r['problems']}"
        assert r["produced"] == r["acked"] == r["consumed"] == RECORDS_PER_CODEC, f"{codec}: {r}"
        assert r["topic"] == f"{prefix}-{codec}"
        assert len(r["mid_batch"]) == 2, f"{codec}: {r}"
        for m in r["mid_batch"]:
            assert m["ok"] is True and m["first"] == m["offset"] and m["checked"] == 50, f"{codec}: {m}"

    # Independent look at what the Java client left behind.
    ck = pytest.importorskip("confluent_kafka")
    consumer = ck.Consumer({"bootstrap.servers": broker.bootstrap, "client.id": "hw-java-xcheck",
                            "group.id": "hw-unused-assign-only", "enable.auto.commit": False})
    try:
        for codec in CODECS:
            topic = f"{prefix}-{codec}"
            total = 0
            for p in range(PARTITIONS):
                lo, hi = consumer.get_watermark_offsets(ck.TopicPartition(topic, p), timeout=10)
                assert lo == 0, f"{topic}/{p} low watermark {lo}"
                total += hi
            assert total == RECORDS_PER_CODEC, f"{topic}: high watermarks add up to {total}"
    finally:
        consumer.close()
