"""``dignity job`` in a subprocess on a real SQLite file: submit a file, follow it to its end
(run through the shared ``run_job`` path), list and cancel, and the exits when it fails, when
no worker takes it in time, and for bad arguments."""

from __future__ import annotations

import json
from pathlib import Path

from dignity.samples import encode, landscape
from dignity.services import CLI, Services
from dignity.settings import Settings
from dignity.worker.tasks import run_job
from tests.integration.test_cli import Cli


def run_here(data: Path, job_id: str) -> str:
    services = Services(Settings(data_dir=data, index_snapshot=False), profile=CLI)
    try:
        return run_job(services, services.jobs, job_id, "test-runner")
    finally:
        services.close()


def test_submit_show_list_cancel(tmp_path: Path) -> None:
    data = tmp_path / "data"
    cli = Cli(data)
    photo = tmp_path / "a.jpg"
    photo.write_bytes(encode(landscape(3, (320, 240)), "JPEG"))
    [job] = cli.lines("job", "submit", str(photo), "--content-id", "post-7")
    assert job["state"] == "queued" and job["payload"]["content_id"] == "post-7"
    # Nobody runs it: --wait gives up with a clear message and a non-zero exit.
    r = cli("job", "show", str(job["id"]), "--wait", "--timeout", "0.3")
    assert r.returncode != 0 and "is a worker running" in r.stderr
    assert run_here(data, str(job["id"])) == "done"
    [done] = cli.lines("job", "show", str(job["id"]), "--wait")
    assert done["state"] == "done" and done["result"]["scan_id"] >= 1
    [other] = cli.lines("job", "submit", "--url", "https://example.org/b.jpg")
    listed = cli.lines("job", "list", "--state", "queued")
    assert [j["id"] for j in listed] == [other["id"]]
    [cancelled] = cli.lines("job", "cancel", str(other["id"]))
    assert cancelled["state"] == "cancelled"
    r = cli("job", "show", str(other["id"]), "--wait")
    assert r.returncode == 1 and "cancelled" in r.stderr
    assert json.loads(r.stdout)["state"] == "cancelled"
    r = cli("job", "cancel", str(other["id"]))
    assert r.returncode != 0 and "job.finished" in r.stderr


def test_a_failed_job_exits_1_with_its_error(tmp_path: Path) -> None:
    data = tmp_path / "data"
    cli = Cli(data)
    text = tmp_path / "notes.jpg"
    text.write_bytes(b"this is not an image at all")
    [job] = cli.lines("job", "submit", str(text))
    assert run_here(data, str(job["id"])) == "failed"
    r = cli("job", "show", str(job["id"]))
    assert r.returncode == 1 and "media." in r.stderr
    assert json.loads(r.stdout)["error"]["code"].startswith("media.")


def test_bad_arguments(tmp_path: Path) -> None:
    cli = Cli(tmp_path / "data")
    r = cli("job", "submit")
    assert r.returncode == 2 and "exactly one of" in r.stderr
    r = cli("job", "submit", "--url", "https://example.org/a.jpg", "--object", "b/k")
    assert r.returncode == 2
    r = cli("job", "submit", "--object", "no-key")
    assert r.returncode == 2 and "BUCKET/KEY" in r.stderr
    r = cli("job", "submit", str(tmp_path / "missing.jpg"))
    assert r.returncode != 0 and "cannot read" in r.stderr
    r = cli("job", "show", "nope")
    assert r.returncode != 0 and "job.not_found" in r.stderr
    r = cli("job", "list", "--state", "sleeping")
    assert r.returncode == 2


def test_the_embedded_worker_runs_a_job_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    # `dignity worker` without a broker runs queued jobs in its own threads; SIGTERM stops
    # them and exits 0 (not killed by the signal, -15), after the job it ran is recorded.
    import signal
    import subprocess
    import sys
    import time

    data = tmp_path / "data"
    cli = Cli(data)
    cli.env.pop("DIGNITY_BROKER_URL", None)
    photo = tmp_path / "a.jpg"
    photo.write_bytes(encode(landscape(4, (320, 240)), "JPEG"))
    [job] = cli.lines("job", "submit", str(photo))
    worker = subprocess.Popen(
        [sys.executable, "-m", "dignity", "worker", "--concurrency", "1"],
        env=cli.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        [done] = cli.lines("job", "show", str(job["id"]), "--wait", "--timeout", "60")
        assert done["state"] == "done"
        time.sleep(0.5)  # past start-up: the handlers are in place once a job has run
        worker.send_signal(signal.SIGTERM)
        _, err = worker.communicate(timeout=40)
    finally:
        if worker.poll() is None:
            worker.kill()
    assert worker.returncode == 0, err
    assert "embedded runner" in err
