"""The seeds' workflows, run as written, with the outcome each seed's text describes.

Seed 003 ("aggregating the outputs of parallel steps", its YAML with the indentation restored
in tests/argo_examples/seed-003-*.yaml): a loop's output parameters aggregated into a JSON
array; looped steps writing artifacts to a shared volume under random names; and the fan-in
whose collected JSON is ``[{"message":"hello"},{"message":"world"}]`` in some order. Seed 000
("dynamically scaling a workflow step", whose YAML the article shows as images: written from
its text in tests/argo_examples/seed-000-*.yaml): an output parameter read from a file, a
withParam loop over a script's JSON list, and a fan-out sized by the data step's output.

The two artifact workflows of seed 003 name their files with ``{{= sprig.randAlphaNum(6) }}``,
an expression tag (implemented on the ``exprs`` branch); they pass once it is merged.
"""

from __future__ import annotations

import json
import re
import subprocess
import tarfile
from pathlib import Path
from typing import Any

from tests.test_runner_semantics import nodes, outputs, root_of, run


def repository(record: dict[str, Any]) -> Path:
    return Path(record["workersRunner"]["artifactRepository"])


def saved(record: dict[str, Any], node: dict[str, Any], name: str) -> Path:
    """The repository file of a node's output artifact."""
    arts = {a["name"]: a for a in node["outputs"]["artifacts"]}
    return repository(record) / arts[name]["s3"]["key"]


def test_seed_003_parameters_are_aggregated(tmp_path: Path) -> None:
    """The loop's ``message`` outputs become one JSON array (docs/walk-through/loops.md,
    operator.go aggregation); ``{{ outputs.parameters.message.path }}`` with spaces inside the
    braces is the output's path (util/template simple_template.go trims the tag)."""
    code, rec = run(tmp_path, "seed-003-parameters.yaml")
    assert code == 0, rec.get("status")
    by = nodes(rec)
    assert outputs(by["print-message(0:hello)"]) == {"message": "hello"}
    assert outputs(by["print-message(1:world)"]) == {"message": "world"}
    aggregated = by["print-aggregated-messages"]
    assert aggregated["inputs"]["parameters"] == [{"name": "message", "value": '["hello","world"]'}]
    assert aggregated["outputs"]["result"] == '["hello","world"]'


def test_seed_003_artifacts_on_a_shared_volume(tmp_path: Path) -> None:
    """Each looped step gets ``{{ item }}`` as a raw input artifact and writes it to the shared
    volume under a random six-character name; collect's output artifact is the whole folder.
    Needs ``{{= sprig.randAlphaNum(6) }}`` (branch exprs)."""
    code, rec = run(tmp_path, "seed-003-artifacts-pvc.yaml")
    assert code == 0, rec.get("status")
    by = nodes(rec)
    names = []
    for item, text in ((0, "hello"), (1, "world")):
        node = by[f"print-message({item}:{text})"]
        assert node["outputs"]["result"] == text
        path = node["outputs"]["artifacts"][0]["path"]
        assert re.fullmatch(r"/mnt/message-[A-Za-z0-9]{6}\.txt", path), path
        names.append(path.removeprefix("/mnt/"))
    with tarfile.open(saved(rec, by["collect"], "messages")) as tf:
        files = {
            m.name: tf.extractfile(m).read().decode()  # type: ignore[union-attr]
            for m in tf.getmembers()
            if m.isfile()
        }
    assert files == {f"mnt/{names[0]}": "hello", f"mnt/{names[1]}": "world"}


def test_seed_003_json_fan_in(tmp_path: Path, jq: str) -> None:
    """The seed's result: the collected artifact is ``[{"message":"hello"},{"message":"world"}]``
    in some order (checked with jq, as the seed builds it). Needs branch exprs."""
    code, rec = run(tmp_path, "seed-003-json-fan-in.yaml")
    assert code == 0, rec.get("status")
    by = nodes(rec)
    with tarfile.open(saved(rec, by["collect"], "aggregated")) as tf:
        member = tf.extractfile("messages.json")
        assert member is not None
        text = member.read().decode()
    check = subprocess.run(
        [jq, "-e", 'sort_by(.message) == [{"message":"hello"},{"message":"world"}]'],
        input=text,
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, text


def test_seed_000_output_parameter(tmp_path: Path) -> None:
    """The file's content is the output parameter the next step prints
    (docs/walk-through/output-parameters.md)."""
    code, rec = run(tmp_path, "seed-000-output-parameter.yaml")
    assert code == 0, rec.get("status")
    by = nodes(rec)
    assert outputs(by["generate-parameter"]) == {"hello-param": "hello world"}
    assert by["consume-parameter"]["outputs"]["result"] == "hello world"


def test_seed_000_loop_over_a_script_result(tmp_path: Path) -> None:
    """withParam over the script's stdout: one step per value, 20 to 30."""
    code, rec = run(tmp_path, "seed-000-loops-param-result.yaml")
    assert code == 0, rec.get("status")
    by = nodes(rec)
    assert json.loads(by["generate"]["outputs"]["result"]) == list(range(20, 31))
    items = sorted(n for n in by if n.startswith("sleep("))
    assert len(items) == 11
    assert by["sleep(0:20)"]["outputs"]["result"].startswith("sleeping for 20 seconds")


def test_seed_000_fan_out_sized_by_the_data(tmp_path: Path) -> None:
    """1000 rows at 100 per step: 10 sleep steps; at 500 per step: 2 (the article's runs)."""
    for per, expected in (("100", 10), ("500", 2)):
        code, rec = run(tmp_path / per, "seed-000-scaling.yaml", "-p", f"val-per-sleep={per}")
        assert code == 0, rec.get("status")
        by = nodes(rec)
        assert outputs(by["generate-data"]) == {"rows": "1000"}
        group = by["sleep-n-sec"]
        assert group["type"] == "TaskGroup"
        assert len(group["children"]) == expected
        assert root_of(rec)["phase"] == "Succeeded"
