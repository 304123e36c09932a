"""Reliability/security: hostile identifiers never reach SQL, output paths stay under their base,
a canary password never leaves the process, and every pod template meets the Kubernetes
"restricted" Pod Security Standard (an explicit rule table over `kubectl kustomize manifests/`)."""

from __future__ import annotations

import copy
import html
import json
import sqlite3
import string
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import services
from conftest import unavailable
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pipeline_helpers import Pipeline, RunStep, error_of
from reliability_helpers import STEP_PYTHONPATH, TcpProxy, pg_url_via

from workers import db, redaction, storage
from workers.config import check_run_id
from workers.errors import UsageError

try:
    from tests import manifest_checks as mc
except ImportError:
    import manifest_checks as mc  # type: ignore[no-redef]

pytestmark = pytest.mark.reliability
ENV = {"PYTHONPATH": STEP_PYTHONPATH}

HOSTILE_NAMES = [
    'x"; DROP TABLE victim; --',
    "victim; DROP TABLE victim",
    "x' OR '1'='1",
    "victim--",
    "a.b.c",
    "tablé",
    "\uff56\uff49\uff43\uff54\uff49\uff4d",  # fullwidth "victim"
    "x y",
    "`victim`",
    "[victim]",
    "1victim",
    "x\u200bvictim",
    "x" * 64,
    "",
]


def _tables(url: str) -> set[str]:
    if url.startswith("sqlite:///"):
        with sqlite3.connect(url[len("sqlite:///") :]) as conn:
            return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    import psycopg

    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchall()
    return {r[0] for r in rows}


def _create_victim(url: str) -> None:
    sql = "CREATE TABLE victim (id integer primary key)"
    if url.startswith("sqlite:///"):
        with sqlite3.connect(url[len("sqlite:///") :]) as conn:
            conn.execute(sql)
    else:
        import psycopg

        with psycopg.connect(url) as conn:
            conn.execute(sql)


def test_hostile_table_and_column_names_are_rejected_never_executed(
    db_url: str, run_step: RunStep, tmp_path: Path
) -> None:
    _create_victim(db_url)
    pipe = Pipeline(run_step, db_url, str(tmp_path / "store"), tmp_path, env=ENV)
    pipe.produce(10)
    before = _tables(db_url)
    tried = 0
    item = '{"index":0,"lo":1,"hi":10,"rows":10}'
    for name in HOSTILE_NAMES:
        calls: list[tuple[str, list[str]]] = [
            ("produce", ["--rows", "3", "--run-id", "r", "--table", name]),
            ("split", ["--from-db", "--run-id", "r", "--table", name]),
            ("shard", ["--shard", item, "--run-id", pipe.run_id, "--table", name]),
        ]
        for flag in ("--key-column", "--run-column", "--data-column"):
            if name:  # an empty run/data column means "none", which is legal
                calls.append(("split", ["--from-db", "--run-id", "r", flag, name]))
                calls.append(("shard", ["--shard", item, "--run-id", pipe.run_id, flag, name]))
        for step, args in calls:
            proc = (
                pipe.step(step, *args, "--store", pipe.store)
                if step == "shard"
                else pipe.step(step, *args)
            )
            assert proc.returncode == 2, (step, args, proc.stderr)
            assert "invalid" in error_of(proc)["message"]
            tried += 1
    assert _tables(db_url) == before  # nothing dropped, nothing created
    assert tried >= 80
    # NUL cannot travel in argv; the library refuses it all the same.
    for bad in ("x\x00y", "x\x00", "victim\x00; DROP TABLE victim"):
        with pytest.raises(UsageError):
            db.Source(bad)
        with pytest.raises(UsageError):
            db.Source("t", key_column=bad)


@pytest.mark.parametrize(
    "run_id",
    ["..", "../x", "/abs", "a/b", "a\\b", ".hidden", "-x", "a\x00b", "é", "x" * 129, "a b", "~"],
)
def test_run_ids_that_could_escape_are_rejected(
    run_step: RunStep, tmp_path: Path, run_id: str
) -> None:
    with pytest.raises(UsageError):
        check_run_id(run_id)
    if "\x00" in run_id:
        return
    base = tmp_path / "sandbox" / "base"
    base.mkdir(parents=True)
    env = {"WORKERS_DATABASE_URL": f"sqlite:///{tmp_path}/db.sqlite", **ENV}
    item = '{"index":0,"lo":1,"hi":5,"rows":5}'
    for step, args, extra_env in [
        ("shard", ["--shard", item, "--run-id", run_id], {}),
        ("shard", ["--shard", item], {"WORKERS_RUN_ID": run_id}),
        ("shard", ["--shard", item], {"ARGO_WORKFLOW_NAME": run_id}),
        ("split", ["--count", "5", "--run-id", run_id, "--store", "s"], {}),
        ("produce", ["--rows", "5", "--run-id", run_id], {}),
    ]:
        proc = run_step(step, *args, env={**env, **extra_env}, cwd=base)
        assert proc.returncode == 2, (step, proc.stderr)
        assert "invalid run id" in error_of(proc)["message"] or run_id.startswith("-")
    assert not any((tmp_path / "sandbox").rglob("*.json*"))


def test_storage_paths_cannot_escape_their_base(tmp_path: Path) -> None:
    for part in ("..", "../x", "a/../../b", "/etc/passwd", ""):
        with pytest.raises(UsageError):
            storage.join(str(tmp_path), part)
    from workers import layout

    assert layout.part_url("s3://b/run", 7) == "s3://b/run/parts/part-00007.jsonl"
    # A hostile plan.json (a store shared with others) cannot steer merge outside the store.
    store = tmp_path / "store"
    store.mkdir()
    for shards in ([{"index": "../../x"}], [{"index": -1}], [{"index": 1}], "x", [{"lo": 1}]):
        (store / "plan.json").write_text(json.dumps({"run_id": "r", "total": 1, "shards": shards}))
        with pytest.raises(UsageError):
            layout.read_plan(str(store / "plan.json"))


CANARY = "CanaryPw-7f3e9"
# Database URLs that make a step fail, each run by FAILING_STEPS with WORKERS_DEBUG 0 and 1.
FAILING_URLS = [
    "{refused}",  # the test database's URL, port 9
    "{no_db}",  # the test database's URL, another database
    "postgresql://nobody_here:{pw}@{host}/postgres",
    "{url}?sslmode=bogus",
    "postgresql://u:{pw}@{host}:notaport/db",
    "postgresql://u@{host}/db?password={pw}&connect_timeout=2&port=9",
    "postgresql+psycopg://u:{pw}@127.0.0.1:9/db",
    "mysql://u:{pw}@127.0.0.1:9/db",
    "sqlite:///{tmp}/x.db?password={pw}",
    "not a url {pw}",
    # malformed: their messages quote the password (main printed these tracebacks whole)
    "postgresql://u:{pw}%zz@{host}/db",
    "postgresql://u:{pw}@Tail@{host}/db",
]
FAILING_STEPS = [
    ("produce", ["--rows", "5", "--run-id", "r"]),
    ("split", ["--from-db", "--run-id", "r", "--table", "missing_table"]),
    (
        "shard",
        ["--shard", '{"index":0,"lo":null,"hi":null,"rows":null}', "--run-id", "r", "--store", "."],
    ),
]
DEBUG_MODES = ("0", "1")


def _canary_free(*texts: str) -> None:
    for text in texts:
        assert CANARY not in text
        assert CANARY.replace("-", "%2D") not in text


def test_canary_password_appears_nowhere(pg_db: str, run_step: RunStep, tmp_path: Path) -> None:
    """The test server trusts 127.0.0.1, so a password in the URL is accepted and ignored: the
    whole pipeline runs with the canary in its URL, then fails in every way we can provoke."""
    host = pg_db.split("@", 1)[1].split("/", 1)[0]
    url = pg_url_via(pg_db, host, CANARY)
    pipe = Pipeline(run_step, url, str(tmp_path / "store"), tmp_path, env=ENV)
    outputs: list[str] = []
    outputs += [pipe.step(s, "--help").stdout for s in ("produce", "split", "shard", "merge")]
    assert pipe.produce(50) == 50
    items = pipe.split(20)
    for item in items:
        proc = pipe.shard(item, env={"WORKERS_DEBUG": "1"})
        outputs += [proc.stdout, proc.stderr]
    outputs.append(pipe.merge().stderr)
    for path in Path(pipe.store).rglob("*"):
        if path.is_file():
            outputs.append(path.read_text())
    # failures: refused, wrong database (server error naming things), a missing table, a cut
    fields = {
        "url": url,
        "host": host,
        "pw": CANARY,
        "tmp": tmp_path,
        "refused": url.replace(host, "127.0.0.1:9"),
        "no_db": url.rsplit("/", 1)[0] + "/no_such_database",
    }
    failing = [t.format(**fields) for t in FAILING_URLS]
    for bad in failing:
        for debug in DEBUG_MODES:
            for step, args in FAILING_STEPS:
                proc = run_step(
                    step,
                    *args,
                    env={
                        "WORKERS_DATABASE_URL": bad,
                        "WORKERS_DEBUG": debug,
                        "WORKERS_CONNECT_TIMEOUT": "2",
                    },
                    cwd=tmp_path,
                )
                outputs += [proc.stdout, proc.stderr]
    target = tuple(host.split(":"))
    with TcpProxy(
        (target[0], int(target[1])), mode="reset", after_bytes=300, direction="up"
    ) as proxy:
        proc = pipe.shard(
            items[0],
            "--force",
            env={
                "WORKERS_DATABASE_URL": pg_url_via(pg_db, proxy.address, CANARY),
                "WORKERS_DEBUG": "1",
            },
        )
        assert proc.returncode == 75
        outputs += [proc.stdout, proc.stderr]
    _canary_free(*outputs)


ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "tests" / "argo_examples" / "secret-canary.yaml"
RUNNER_HANG_GUARD_S = 60  # not a speed assertion: main took 213 s here (quadratic redaction)


def test_runner_files_and_lines_never_hold_the_secret(tmp_path: Path) -> None:
    """``python -m workers run`` with a secretKeyRef database URL that pods print, pass on as a
    parameter and fail with, beside a 300,000-character token in a pod's output."""
    env = {
        **services.step_env(tmp_path / "home", {"PYTHONPATH": str(ROOT)}),
        "CANARY_URL": f"postgresql://app:{CANARY}@db.example:5432/x",
    }
    runs = tmp_path / "runs"
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "workers", "run", str(EXAMPLE), "--runs", str(runs)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=RUNNER_HANG_GUARD_S * 3,
        check=False,
    )
    elapsed = time.monotonic() - t0
    assert proc.returncode == 1, proc.stderr  # the "fail" step fails, as written
    assert elapsed < RUNNER_HANG_GUARD_S, f"the runner took {elapsed:.0f} s to exit"
    (run_dir,) = runs.iterdir()
    record = (run_dir / "run.json").read_text()
    timeline = (run_dir / "timeline.html").read_text()
    _canary_free(record, timeline, proc.stdout, proc.stderr)
    # What was masked is still there around the mask, and the long token is not mangled.
    assert "cannot connect with ***" in proc.stdout  # the failed pod's stderr tail
    assert "password was ***" in proc.stdout  # the URL's password alone is a secret too
    assert "url postgresql://app:***@db" in proc.stdout  # a URL cut at 70 characters
    nodes = json.loads(record)["status"]["nodes"].values()
    leak = next(n for n in nodes if n["displayName"] == "leak")
    seen = {p["name"]: p["value"] for p in leak["outputs"]["parameters"]}["seen"]
    assert seen == "password=***\nurl ***"
    # outputs.result keeps the stdout's last 256 kB, as Argo's executor does: the line begins
    # inside the token, which must come through whole from there on
    token = leak["outputs"]["result"].split()[0]
    assert len(token) > 250_000 and token.isalnum()


# ---------------------------------------------------------------- redaction rule

# (text, secrets, expected): the rule of workers/redaction.py, one row per clause.
REDACTION_TABLE: list[tuple[str, tuple[str, ...], str]] = [
    # A short secret is never replaced inside other text (main turned "step" into "ste***")...
    ('{"step":"shard","event":"start"}', ("p",), '{"step":"shard","event":"start"}'),
    ("a p b", ("p",), "a p b"),
    # ...but a URL's password slot and a password= value are masked whatever their length.
    ("postgresql://u:p@h/db", ("p",), "postgresql://u:***@h/db"),
    ("dsn password=p host=h", ("p",), "dsn password=*** host=h"),
    # A secret is masked as a whole value, never inside a word.
    ('"step": "steps misstep step"', ("step",), '"***": "steps misstep ***"'),
    ("key=hunter22&x=1", ("hunter22",), "key=***&x=1"),
    ("hunter22x xhunter22 hunter22", ("hunter22",), "hunter22x xhunter22 ***"),
    ("'hunter22'", ("hunter22",), "'***'"),
    ("line\nhunter22\n", ("hunter22",), "line\n***\n"),
    # After an escape sequence the secret starts a value: JSON, repr and URL-encoded text.
    (r'{"m":"bad\nhunter22"}', ("hunter22",), r'{"m":"bad\n***"}'),
    (r"'a\x00hunter22'", ("hunter22",), r"'a\x00***'"),
    ("q=%0Ahunter22", ("hunter22",), "q=%0A***"),
    # Spellings: URL-encoded, JSON-escaped, HTML-escaped; punctuation edges need no boundary.
    ("postgresql://u:s3cr%40t@db/x (s3cr@t)", ("s3cr@t",), "postgresql://u:***@db/x (***)"),
    (r'{"pw":"a\"b\\c-9"}', ('a"b\\c-9',), r'{"pw":"***"}'),
    ("<td>a&lt;b&gt;c-9</td>", ("a<b>c-9",), "<td>***</td>"),
    ("x-tok!-y", ("-tok!-",), "x***y"),
    # An unencoded "@" in a password: the slot runs to the last "@" of the authority.
    ("mysql://u:p@ss@h:1/db", (), "mysql://u:***@h:1/db"),
    # Overlapping occurrences and two secrets that overlap: their union is masked.
    ("x abab-abab y", ("abab-abab",), "x *** y"),
    ("aaaa aaaaa aaaa", ("aaaa",), "*** aaaaa ***"),
    ("k=abcdef", ("abcd", "cdef"), "k=abcdef"),
    ("k=abcd-efg", ("abcd-", "-efg"), "k=***"),
    # Text without secrets or URL passwords is returned as it is.
    ("scheme://host/path?q=1 user@host a:b@c", (), "scheme://host/path?q=1 user@host a:b@c"),
]


@pytest.mark.parametrize(("text", "secrets", "expected"), REDACTION_TABLE)
def test_redaction_rule_table(text: str, secrets: tuple[str, ...], expected: str) -> None:
    assert redaction.redact(text, secrets) == expected


# Positions where a secret stands as a whole value in text we write.
VALUE_POSITIONS = [
    "{}",
    " {} ",
    '"{}"',
    "'{}'",
    "key={}&other=1",
    "postgresql://user:{}@host:5432/db",
    "Authorization: Bearer {}\n",
    "\t{},",
    "({})",
]
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SECRETS = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc", "Zs", "Zl", "Zp")), min_size=4
)


@FUZZ
@given(secret=SECRETS, data=st.data())
def test_a_secret_at_a_value_position_never_survives(secret: str, data: st.DataObject) -> None:
    # Filler text shares no character with the secret, so every occurrence is one we placed;
    # and it holds only characters that JSON, URL and HTML spell as themselves: an escape of a
    # filler character (NUL is "\u0000" in JSON) could spell a secret such as "0000" that
    # the text never held.
    plain = [c for c in string.ascii_letters + string.digits + " -_.~" if c not in secret]
    filler = st.text(alphabet=st.sampled_from(plain), max_size=12) if plain else st.just("")
    chunks = data.draw(
        st.lists(
            st.one_of(filler.map(lambda t: ("filler", t)), st.sampled_from(VALUE_POSITIONS)),
            min_size=1,
            max_size=6,
        )
    )
    text = "\n".join(c[1] if isinstance(c, tuple) else c.format(secret) for c in chunks)
    out = redaction.redact(text, (secret,))
    assert secret not in out
    # and its spellings in a JSON document, a URL and HTML
    for spelled in (json.dumps({"m": text}), quote(text, safe=""), html.escape(text)):
        for form in (secret, json.dumps(secret)[1:-1], quote(secret, safe="")):
            assert form not in redaction.redact(spelled, (secret,)) or form not in spelled


@FUZZ
@given(secret=SECRETS, text=st.text())
def test_text_without_the_secret_is_left_as_it_is(secret: str, text: str) -> None:
    assume(secret not in text)
    out = redaction.redact(text, (secret,))
    assert out == redaction.redact(text, ())  # the secret changes nothing here
    if "://" not in text and "=" not in text:
        assert out == text  # and nothing else applied either
    assert redaction.redact(text, ("p", "ab")) == redaction.redact(text, ())  # too short


class _CountingStr(str):
    """A text that counts the scans the redactor makes over it."""

    calls = 0

    def find(self, *args: Any) -> int:  # type: ignore[override]
        type(self).calls += 1
        return super().find(*args)

    def startswith(self, *args: Any) -> bool:  # type: ignore[override]
        type(self).calls += 1
        return super().startswith(*args)


@pytest.mark.parametrize(
    ("secret", "text"),
    [
        ("a" * 1000, "a" * 300_000),  # every position is an occurrence (period 1)
        ("ab" * 500 + "c", "ab" * 150_000),  # a near miss at every other position
        ("x" * 999 + "y", "x" * 300_000 + "y"),  # one match at the very end
        ("tok-" + "Zq9" * 100_000, "token " + "tok-" + "Zq9" * 100_000 + " end"),  # 300,000 chars
    ],
)
def test_occurrence_scan_is_linear(secret: str, text: str) -> None:
    """Complexity, not speed: the number of scans is bounded by n/period, and each scan is
    C-speed str.find/startswith over a region the next one does not revisit."""
    pattern = redaction._Pattern(secret)
    counted = _CountingStr(text)
    _CountingStr.calls = 0
    hits = list(pattern.occurrences(counted))
    assert hits == [i for i in range(len(text)) if text.startswith(secret, i)]
    assert _CountingStr.calls <= 2 * len(text) // pattern.period + 3


# ---------------------------------------------------------------- Pod Security Standard

ALLOWED_VOLUMES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}
SAFE_SYSCTLS = {
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
}


def _eff(pod: dict[str, Any], ctr: dict[str, Any], key: str) -> Any:
    """A container's effective security setting: its own, else the pod's."""
    own = (ctr.get("securityContext") or {}).get(key)
    return own if own is not None else (pod.get("securityContext") or {}).get(key)


Rule = tuple[str, Callable[[dict[str, Any], dict[str, Any]], bool]]
# (rule, check(pod, container) -> ok); pod is {"securityContext", "volumes", "host*"}.
PSS_RULES: list[Rule] = [
    ("runAsNonRoot true", lambda p, c: _eff(p, c, "runAsNonRoot") is True),
    ("runAsUser not 0", lambda p, c: _eff(p, c, "runAsUser") != 0),
    (
        "allowPrivilegeEscalation false",
        lambda p, c: (c.get("securityContext") or {}).get("allowPrivilegeEscalation") is False,
    ),
    (
        "capabilities drop ALL",
        lambda p, c: (
            "ALL" in ((c.get("securityContext") or {}).get("capabilities") or {}).get("drop", [])
        ),
    ),
    (
        "capabilities add only NET_BIND_SERVICE",
        lambda p, c: (
            set(((c.get("securityContext") or {}).get("capabilities") or {}).get("add", []))
            <= {"NET_BIND_SERVICE"}
        ),
    ),
    (
        "seccomp RuntimeDefault or Localhost",
        lambda p, c: (
            (_eff(p, c, "seccompProfile") or {}).get("type") in ("RuntimeDefault", "Localhost")
        ),
    ),
    ("not privileged", lambda p, c: (c.get("securityContext") or {}).get("privileged") is not True),
    ("no hostPorts", lambda p, c: not any(port.get("hostPort") for port in c.get("ports") or [])),
    (
        "procMount Default",
        lambda p, c: (c.get("securityContext") or {}).get("procMount", "Default") == "Default",
    ),
    (
        "no hostNetwork/hostPID/hostIPC",
        lambda p, c: not any(p.get(k) for k in ("hostNetwork", "hostPID", "hostIPC")),
    ),
    (
        "volume types allowed (no hostPath)",
        lambda p, c: all(set(v) - {"name"} <= ALLOWED_VOLUMES for v in p.get("volumes") or []),
    ),
    (
        "sysctls safe",
        lambda p, c: all(
            s.get("name") in SAFE_SYSCTLS
            for s in (p.get("securityContext") or {}).get("sysctls") or []
        ),
    ),
    (
        "seLinux type allowed",
        lambda p, c: (
            (_eff(p, c, "seLinuxOptions") or {}).get("type", "")
            in ("", "container_t", "container_init_t", "container_kvm_t", "container_engine_t")
        ),
    ),
]


def pod_templates(docs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any], list[dict]]]:
    """(where, pod view, containers) for every template that starts a pod."""
    out = []
    for doc in docs:
        if doc.get("kind") not in (
            "WorkflowTemplate",
            "Workflow",
            "CronWorkflow",
            "ClusterWorkflowTemplate",
        ):
            continue
        spec = mc.workflow_spec(doc)
        for tmpl in spec.get("templates") or []:
            containers = [tmpl[k] for k in ("container", "script") if tmpl.get(k)]
            containers += list((tmpl.get("containerSet") or {}).get("containers") or [])
            containers += list(tmpl.get("initContainers") or []) + list(tmpl.get("sidecars") or [])
            if not containers:
                continue
            pod = {
                "securityContext": {
                    **(spec.get("securityContext") or {}),
                    **(tmpl.get("securityContext") or {}),
                },
                "volumes": list(spec.get("volumes") or []) + list(tmpl.get("volumes") or []),
                **{k: spec.get(k) for k in ("hostNetwork", "hostPID", "hostIPC")},
            }
            out.append((f"{mc.name_of(doc)}: {tmpl['name']}", pod, containers))
    return out


def pss_violations(docs: list[dict[str, Any]]) -> list[str]:
    return [
        f"{where}: {c.get('name', 'main')}: {rule}"
        for where, pod, containers in pod_templates(docs)
        for c in containers
        for rule, ok in PSS_RULES
        if not ok(pod, c)
    ]


@pytest.fixture(scope="module")
def rendered() -> list[dict[str, Any]]:
    if mc.kustomize_command() is None:
        unavailable(mc.NO_KUSTOMIZE)
    return mc.render(mc.MANIFESTS)


def test_every_pod_template_meets_the_restricted_pod_security_standard(rendered: list) -> None:
    assert len(pod_templates(rendered)) >= 4
    assert pss_violations(rendered) == []


def _both(t: dict[str, Any], **values: Any) -> None:
    """Set at pod and container level: the container's own setting overrides the pod's."""
    t["securityContext"].update(values)
    t["container"]["securityContext"].update(values)


MUTATIONS: dict[str, Callable[[dict[str, Any]], None]] = {
    "runAsNonRoot true": lambda t: _both(t, runAsNonRoot=False),
    "runAsUser not 0": lambda t: _both(t, runAsUser=0),
    "allowPrivilegeEscalation false": lambda t: t["container"]["securityContext"].pop(
        "allowPrivilegeEscalation"
    ),
    "capabilities drop ALL": lambda t: t["container"]["securityContext"].pop("capabilities"),
    "capabilities add only NET_BIND_SERVICE": lambda t: t["container"]["securityContext"][
        "capabilities"
    ].update(add=["SYS_ADMIN"]),
    "seccomp RuntimeDefault or Localhost": lambda t: _both(
        t, seccompProfile={"type": "Unconfined"}
    ),
    "not privileged": lambda t: t["container"]["securityContext"].update(privileged=True),
    "no hostPorts": lambda t: t["container"].update(ports=[{"containerPort": 80, "hostPort": 80}]),
    "procMount Default": lambda t: t["container"]["securityContext"].update(procMount="Unmasked"),
    "volume types allowed (no hostPath)": lambda t: t["volumes"].append(
        {"name": "h", "hostPath": {"path": "/"}}
    ),
    "sysctls safe": lambda t: t["securityContext"].update(
        sysctls=[{"name": "kernel.msgmax", "value": "1"}]
    ),
    "seLinux type allowed": lambda t: t["securityContext"].update(seLinuxOptions={"type": "spc_t"}),
}


@pytest.mark.parametrize("rule", [r for r, _ in PSS_RULES])
def test_each_pss_rule_catches_its_violation(rendered: list, rule: str) -> None:
    docs = copy.deepcopy(rendered)
    doc = next(d for d in docs if d.get("kind") == "WorkflowTemplate" and "shard" in mc.name_of(d))
    tmpl = next(t for t in mc.workflow_spec(doc)["templates"] if t.get("container"))
    if rule == "no hostNetwork/hostPID/hostIPC":
        doc["spec"]["hostNetwork"] = True
    else:
        MUTATIONS[rule](tmpl)
    found = pss_violations(docs)
    assert found and all(rule in f for f in found), found
