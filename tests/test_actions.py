"""The row actions (plan, modify with backups, rollback), end to end on the sandbox; the
read-config mapping and the diff."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from batchcfg import Options, apply
from batchcfg.commands import plan, rollback
from batchcfg.cli import main
from batchcfg.auth import TokenAuth
from batchcfg.client import Client
from batchcfg.actions import Modify
from batchcfg.backup import Backup, read_backup
from batchcfg.merge import Patch, writable_body
from batchcfg.sandbox.data import details
from batchcfg.sandbox import RunningSandbox, SandboxConfig, earlier_state, serve
from batchcfg.cells import check_row
from batchcfg.sender import Sender

from .conftest import EARLIER_BODY, PROJECT, ScriptedServer, changes, listing, read_report, sandbox_options, valid_manifest

SAMPLES = Path(__file__).parent.parent / "samples" / "training_job_configs.csv"


def sample_patches() -> dict[str, tuple[int, Patch]]:
    """The valid sample rows: their row numbers and what each asks for."""
    from batchcfg.manifest import open_manifest

    patches = {}
    for row in open_manifest(SAMPLES).rows():
        checked = check_row(row.cells)
        if checked.ok:
            patches[checked.config_name] = (row.number, Patch(checked.body, checked.labels, checked.unset))
    return patches


def same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Two stored configs that the Details API shows alike (it shows ``"0.010"`` as 0.01)."""
    return changes(*(writable_body(details("x", body, 0)) for body in (a, b))) == []


def puts(sandbox: RunningSandbox) -> int:
    return len(sandbox.state.puts)


def stored(sandbox: RunningSandbox) -> dict[str, dict[str, Any]]:
    return {name: body for (_, name), body in sandbox.state.configs.items()}


def test_plan_apply_rollback_end_to_end(tmp_path: Path) -> None:
    patches = sample_patches()
    seeded = {name: earlier_state(patch, number) for name, (number, patch) in patches.items()}
    wanted = {name: patch.over(seeded[name]) for name, (_, patch) in patches.items()}
    changed = sorted(name for name in patches if not same(seeded[name], wanted[name]))
    assert 0 < len(changed) < len(patches)

    async def scenario() -> None:
        async with serve(SandboxConfig()) as sandbox:
            for name, body in seeded.items():
                sandbox.seed(name, body)
            # plan: counts of changed and unchanged match the seed; nothing is written
            summary = await plan(SAMPLES, sandbox_options(sandbox, tmp_path / "plan.csv"))
            assert summary.counts == {"changed": len(changed), "unchanged": len(patches) - len(changed),
                                      "invalid": 3}
            assert summary.exit_code == 1 and puts(sandbox) == 0
            records = {r["config_name"]: r for r in read_report(tmp_path / "plan.csv")}
            assert sorted(n for n, r in records.items() if r["status"] == "changed") == changed
            assert "worker_server_num: " in records[changed[0]]["changes"]
            # apply with its backup: the new state everywhere; unchanged rows are not sent
            backup = tmp_path / "backup.jsonl"
            summary = await apply(SAMPLES, sandbox_options(sandbox, tmp_path / "apply.csv", backup=backup))
            assert summary.counts == {"succeeded": len(changed), "skipped": len(patches) - len(changed),
                                      "invalid": 3}
            assert puts(sandbox) == len(changed)
            assert all(same(stored(sandbox)[name], wanted[name]) for name in patches)
            saved = {r["config_name"]: r["before"] for r in read_backup(backup)}
            assert sorted(saved) == changed, "the backup holds the configs the run changed"
            assert all(same(saved[name], seeded[name]) for name in changed)
            assert all(r["backup"] == str(backup) for r in read_report(tmp_path / "apply.csv") if r["status"] == "succeeded")
            # rollback: every config exactly as it was
            summary = await rollback(backup, sandbox_options(sandbox, tmp_path / "rb1.csv"))
            assert summary.counts == {"succeeded": len(changed)}
            assert all(same(stored(sandbox)[name], seeded[name]) for name in patches)
            # a second rollback changes nothing
            before = puts(sandbox)
            summary = await rollback(backup, sandbox_options(sandbox, tmp_path / "rb2.csv"))
            assert summary.counts == {"skipped": len(changed)} and puts(sandbox) == before
            assert {(r["error_code"], r["error_message"]) for r in read_report(tmp_path / "rb2.csv")} == {
                ("", "unchanged: already as backed up")}
            # a sweep over an unchanged manifest writes nothing
            await apply(SAMPLES, sandbox_options(sandbox, tmp_path / "again.csv", no_backup=True))
            before = puts(sandbox)
            summary = await apply(SAMPLES, sandbox_options(sandbox, tmp_path / "sweep.csv"))
            assert puts(sandbox) == before, "zero PUTs, counted at the server"
            assert summary.counts == {"skipped": len(patches), "invalid": 3}
            assert {(r["error_code"], r["error_message"]) for r in read_report(tmp_path / "sweep.csv")
                    if r["status"] == "skipped"} == {("", "unchanged")}
            assert not list(tmp_path.glob("batchcfg-backup-*")), "no backup when nothing changes"

    anyio.run(scenario)


def test_rollback_reports_a_conflict_instead_of_overwriting(tmp_path: Path) -> None:
    patches = sample_patches()

    async def scenario() -> None:
        async with serve(SandboxConfig()) as sandbox:
            for name, (number, patch) in patches.items():  # all differ from the manifest
                sandbox.seed(name, {**earlier_state(patch, number), "config_desc": "an earlier description"})
            seeded = dict(stored(sandbox))
            backup = tmp_path / "backup.jsonl"
            await apply(SAMPLES, sandbox_options(sandbox, tmp_path / "apply.csv", backup=backup))
            someone = "resnet50-imagenet"
            sandbox.seed(someone, {**stored(sandbox)[someone], "worker_server_num": 7})  # changed by hand
            summary = await rollback(backup, sandbox_options(sandbox, tmp_path / "rb.csv"))
            records = {r["config_name"]: r for r in read_report(tmp_path / "rb.csv")}
            assert (records[someone]["status"], records[someone]["error_code"]) == ("conflict", "BATCHCFG.CHANGED_SINCE")
            assert records[someone]["error_message"].startswith("conflict: changed since the run")
            assert "worker_server_num: 2 -> 7" in records[someone]["error_message"]
            assert stored(sandbox)[someone]["worker_server_num"] == 7, "not overwritten"
            assert summary.counts == {"succeeded": len(patches) - 1, "conflict": 1} and summary.exit_code == 1
            summary = await rollback(backup, sandbox_options(sandbox, tmp_path / "forced.csv", force=True))
            assert summary.counts == {"succeeded": 1, "skipped": len(patches) - 1}
            assert all(same(stored(sandbox)[name], seeded[name]) for name in patches)

    anyio.run(scenario)


def test_a_resumed_run_keeps_one_backup_and_never_backs_up_a_changed_config(tmp_path: Path) -> None:
    names = [f"c{i:02d}" for i in range(30)]
    manifest = tmp_path / "m.csv"
    manifest.write_text("config_name,worker_server_num,spec_id,model_id,data_url\n"
                        + "".join(f"{n},3,1,7,/bucket/new/\n" for n in names))
    earlier = {"worker_server_num": 1, "spec_id": 1, "model_id": 7, "data_url": "/bucket/old/"}
    new = {"worker_server_num": 3, "spec_id": 1, "model_id": 7, "data_url": "/bucket/new/"}

    async def scenario() -> None:
        async with serve(SandboxConfig()) as sandbox:
            for name in names:
                sandbox.seed(name, earlier)
            stop = anyio.Event()
            ended = []

            def count(outcome: Any) -> None:
                ended.append(outcome)
                if len(ended) == 10:
                    stop.set()

            first = await apply(manifest, sandbox_options(sandbox, tmp_path / "1.csv", concurrency=2),
                                on_outcome=count, stop=stop)
            assert first.interrupted and first.counts["cancelled"] > 0
            backup = first.backup
            assert backup is not None and backup.name.startswith("batchcfg-backup-")
            # As if the interrupted run had changed c29 and died before its report said so:
            # its backup holds c29 as it was, and the config is already changed.
            assert "c29" not in {r["config_name"] for r in read_backup(backup)}
            with backup.open("a") as handle:
                handle.write(json.dumps({"project_id": PROJECT, "config_name": "c29", "before": earlier,
                                         "sent": new, "sent_sha256": "", "row": 31}) + "\n")
            sandbox.seed("c29", new)
            second = await apply(manifest, sandbox_options(sandbox, tmp_path / "2.csv", resume=tmp_path / "1.csv"))
            assert second.backup == backup, "the resumed run appends to the same backup"
            assert second.counts["succeeded"] + second.counts["skipped"] == len(names)
            records = list(read_backup(backup))
            assert Counter(r["config_name"] for r in records) == Counter(names), "each config once"
            assert all(same(r["before"], earlier) for r in records), "never a changed config"
            summary = await rollback(backup, sandbox_options(sandbox, tmp_path / "rb.csv"))
            assert summary.counts == {"succeeded": len(names)}
            assert all(same(body, earlier) for body in stored(sandbox).values())

    anyio.run(scenario)


async def test_every_put_finds_its_backup_on_disk_and_backups_share_fsyncs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """At the moment each PUT arrives, the backup file already holds that config (as a kill -9
    would leave it), though rows in flight together share one fsync (a group commit)."""
    names = [f"cfg-{i:03d}" for i in range(300)]
    backup = tmp_path / "backup.jsonl"
    not_yet_on_disk: list[str] = []
    syncs: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr("batchcfg.backup.os.fsync", lambda fd: (syncs.append(fd), real_fsync(fd)))

    stored: dict[str, Any] = {}

    async def handle(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if request.method == "PUT":
            if name not in {r["config_name"] for r in read_backup(backup)}:
                not_yet_on_disk.append(name)
            stored[name] = await request.json()
            return web.json_response({"is_success": True})
        return web.json_response({"is_success": True, "config_name": name, **stored.get(name, EARLIER_BODY)})

    app = web.Application()
    app.router.add_route("*", "/v1/{project}/training-job-configs/{name}", handle)
    app.router.add_get("/v1/{project}/training-job-configs", listing)
    async with TestServer(app, host="127.0.0.1") as server:
        summary = await apply(valid_manifest(tmp_path / "m.csv", names),
                              Options.of(endpoint=str(server.make_url("")), project_id=PROJECT,
                                      env={"BATCHCFG_IAM_TOKEN": "t"}, rate=0, concurrency=32,
                                      report=tmp_path / "r.csv", backup=backup))
    assert summary.counts == {"succeeded": len(names)}
    assert not_yet_on_disk == []
    assert sorted(r["config_name"] for r in read_backup(backup)) == names
    assert 0 < len(syncs) < len(names), "rows in flight together share an fsync"


async def test_a_backup_that_cannot_be_written_changes_nothing_and_stops_the_run(
        tmp_path: Path, scripted: ScriptedServer) -> None:
    """The disk is full (the backup's file is /dev/full): no row is changed, each row ends once."""
    from .test_sender import jobs

    outcomes: list[Any] = []
    names = [f"cfg-{i:02d}" for i in range(40)]
    with Backup(tmp_path / "backup.jsonl") as backup:
        backup._handle.close()
        backup._handle = open("/dev/full", "ab", buffering=0)  # fault injection: writes fail, ENOSPC
        async with Client(scripted.url, TokenAuth("t"), timeout=5) as client:
            runner = Sender(rate=0, concurrency=8)
            await runner.run(jobs(*names), Modify(client, backup, replace=True), outcomes.append)
    assert sorted(o.config_name for o in outcomes) == names, "each row ends exactly once"
    assert not [s for s in scripted.seen if s.method == "PUT"], "nothing changed without its backup"
    failed = [o for o in outcomes if o.status == "failed"]
    assert failed and all(o.error_code == "BATCHCFG.BACKUP" for o in failed)
    assert "could not back the config up, so nothing was changed: No space left" in failed[0].error_message
    assert {o.status for o in outcomes} == {"failed", "cancelled"}
    assert runner.stop_reason.startswith("not sent: the backup")


def test_a_failed_read_changes_nothing(tmp_path: Path) -> None:
    """A config that cannot be read first is not changed: the row fails, nothing is backed up."""
    async def scenario() -> None:
        async with serve(SandboxConfig()) as sandbox:
            summary = await apply(SAMPLES, sandbox_options(sandbox, tmp_path / "r.csv", backup=tmp_path / "b.jsonl"))
            assert summary.counts == {"failed": 12, "invalid": 3} and puts(sandbox) == 0
            assert not (tmp_path / "b.jsonl").exists()
            record = read_report(tmp_path / "r.csv")[0]
            assert record["error_code"] == "ModelArts.0102"
            assert record["error_message"].startswith("could not read the config first")

    anyio.run(scenario)


def test_cli_plan_shows_a_diff_and_rollback_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["plan", str(SAMPLES), "--sandbox", "--report", "plan.csv"]) == 1
    err = capsys.readouterr().err
    assert "row 2 resnet50-imagenet:\n    worker_server_num: 3 -> 2" in err
    assert "4 unchanged, 8 changed" in err
    assert main(["apply", str(SAMPLES), "--sandbox", "--rate", "0", "--report", "apply.csv"]) == 1
    err = capsys.readouterr().err
    backups = list(tmp_path.glob("batchcfg-backup-*.jsonl"))
    assert len(backups) == 1 and f"backup (for rollback): {backups[0].name}" in err
    # The embedded sandbox is gone with its run: a rollback against a new one sees the seed
    # missing, and says so row by row rather than failing the run.
    assert main(["rollback", str(backups[0]), "--sandbox", "--report", "rb.csv"]) == 1
    assert {r["error_code"] for r in read_report(tmp_path / "rb.csv")} == {"ModelArts.0102"}
