"""Run the four steps as subprocesses, the way pods run them, and read their results back."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fsspec

RunStep = Callable[..., subprocess.CompletedProcess[str]]


def log_lines(proc: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    """stderr parsed as the JSON lines the steps promise; fails the test on anything else."""
    return [json.loads(line) for line in proc.stderr.splitlines() if line.strip()]


def error_of(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    lines = log_lines(proc)
    assert lines and lines[-1]["level"] == "error", proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[-1]


@dataclass
class Pipeline:
    """One run: a database URL, a store URL and a working folder for count/shard files."""

    run_step: RunStep
    db_url: str
    store: str
    workdir: Path
    run_id: str = "run-1"
    env: Mapping[str, str] = field(default_factory=dict)

    def step(self, step: str, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        env = {"WORKERS_DATABASE_URL": self.db_url, **self.env, **kw.pop("env", {})}
        return self.run_step(step, *args, env=env, cwd=self.workdir, **kw)

    def ok(self, step: str, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        proc = self.step(step, *args, **kw)
        assert proc.returncode == 0, f"{step} exited {proc.returncode}: {proc.stderr}"
        return proc

    def produce(self, rows: int, *args: str) -> int:
        count_file = self.workdir / "count"
        self.ok(
            "produce",
            "--rows",
            str(rows),
            "--run-id",
            self.run_id,
            "--count-file",
            str(count_file),
            *args,
        )
        text = count_file.read_text()
        assert text.endswith("\n") and text.strip().isdigit()
        return int(text)

    def split(self, rows_per_shard: int, *args: str) -> list[dict[str, Any]]:
        out = self.workdir / "shards.json"
        proc = self.ok(
            "split",
            "--count-file",
            str(self.workdir / "count"),
            "--rows-per-shard",
            str(rows_per_shard),
            "--run-id",
            self.run_id,
            "--store",
            self.store,
            "--output-file",
            str(out),
            *args,
        )
        items = json.loads(out.read_text())
        assert json.loads(proc.stdout) == items
        return items  # type: ignore[no-any-return]

    def split_from_db(self, rows_per_shard: int, *args: str) -> list[dict[str, Any]]:
        """split --from-db of this run into the store; returns the shard list."""
        proc = self.ok(
            "split",
            "--from-db",
            "--run-id",
            self.run_id,
            "--store",
            self.store,
            "--rows-per-shard",
            str(rows_per_shard),
            *args,
        )
        return json.loads(proc.stdout)  # type: ignore[no-any-return]

    def shard(
        self, item: dict[str, Any], *args: str, **kw: Any
    ) -> subprocess.CompletedProcess[str]:
        return self.step(
            "shard",
            "--shard",
            json.dumps(item),
            "--run-id",
            self.run_id,
            "--store",
            self.store,
            *args,
            **kw,
        )

    def merge(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.step("merge", "--store", self.store, *args)

    def read(self, rel: str) -> bytes:
        with fsspec.open(f"{self.store.rstrip('/')}/{rel}", "rb") as f:
            return f.read()  # type: ignore[no-any-return]

    def exists(self, rel: str) -> bool:
        fs, path = fsspec.core.url_to_fs(f"{self.store.rstrip('/')}/{rel}")
        return bool(fs.exists(path))

    def run_all(self, rows: int, rows_per_shard: int, fmt: str = "json") -> list[dict[str, Any]]:
        assert self.produce(rows) == rows
        items = self.split(rows_per_shard)
        for item in items:
            proc = self.shard(item)
            assert proc.returncode == 0, proc.stderr
        self.ok("merge", "--store", self.store, "--format", fmt)
        return items
