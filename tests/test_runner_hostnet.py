"""What a local pod knows of its host and network, written from Argo's and Kubernetes' source:
``hostAliases`` in the pod's own ``/etc/hosts``, ``hostNodeName``, and ``http`` templates
against a real HTTP server on loopback."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from runner_helpers import run_yaml

from argo_local.pods import hosts


def nodes(record: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n["displayName"]: n for n in record["status"]["nodes"].values()}


def workflow(templates: str, extra: str = "") -> str:
    return (
        "apiVersion: argoproj.io/v1alpha1\nkind: Workflow\n"
        "metadata:\n  generateName: hostnet-\nspec:\n  entrypoint: main\n"
        + extra
        + "  templates:\n"
        + templates
    )


# ---------------------------------------------------------------- hostAliases, /etc/hosts


@pytest.mark.bwrap
def test_host_aliases_are_in_the_pods_own_etc_hosts(tmp_path: Path) -> None:
    """kubernetes pkg/kubelet/kubelet_pods.go ``managedHostsFileContent`` writes every pod's
    /etc/hosts: the localhost lines, the pod's IP and hostname (its name), then after
    ``# Entries added by HostAliases.`` one ``IP<TAB>NAME<TAB>NAME`` line per alias
    (``hostsEntriesFromHostAliases``); Argo's workflowpod.go appends the workflow's
    ``hostAliases`` then the template's. Under bubblewrap a local pod gets that file, so the
    names resolve (test/e2e/functional/*host_aliases.yaml look them up)."""
    extra = '  hostAliases: [{ip: "127.0.0.1", hostnames: [argo.io]}]\n'
    templates = """\
    - name: main
      hostAliases:
        - {ip: "10.1.2.3", hostnames: [foo.remote, bar.remote]}
      container:
        image: alpine
        command: [sh, -c, 'cat /etc/hosts; echo ---; getent hosts foo.remote argo.io']
"""
    code, rec = run_yaml(tmp_path, workflow(templates, extra), "--sandbox", "bwrap")
    assert code == 0, rec
    pod = next(n for n in rec["status"]["nodes"].values() if n["type"] == "Pod")
    text, _, resolved = pod["outputs"]["result"].partition("\n---\n")
    pod_name = rec["workersRunner"]["pods"][pod["id"]]["podName"]
    assert text + "\n" == (
        "# Kubernetes-managed hosts file.\n"
        "127.0.0.1\tlocalhost\n"
        "::1\tlocalhost ip6-localhost ip6-loopback\n"
        "fe00::0\tip6-localnet\n"
        "fe00::0\tip6-mcastprefix\n"
        "fe00::1\tip6-allnodes\n"
        "fe00::2\tip6-allrouters\n"
        f"127.0.0.1\t{pod_name}\n"
        "\n"
        "# Entries added by HostAliases.\n"
        "127.0.0.1\targo.io\n"
        "10.1.2.3\tfoo.remote\tbar.remote\n"
    )
    assert resolved.split() == ["10.1.2.3", "foo.remote", "bar.remote", "127.0.0.1", "argo.io"]
    # the machine's own file is untouched
    assert "foo.remote" not in Path("/etc/hosts").read_text()


def test_host_aliases_are_refused_without_a_mount_namespace(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With ``--sandbox remap`` a pod reads the machine's /etc/hosts (no mount namespace to
    give it its own), so the aliases cannot be the pod's: refused before running, one line."""
    templates = """\
    - name: main
      hostAliases: [{ip: "127.0.0.1", hostnames: [foo.bar]}]
      container: {image: alpine, command: [echo, hi]}
"""
    code, rec = run_yaml(tmp_path, workflow(templates), "--sandbox", "remap")
    err = capsys.readouterr().err
    assert code == 2 and rec == {}
    assert "hostAliases needs the pod's own /etc/hosts" in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("alias", "said"),
    [
        ('{ip: "300.1.1.1", hostnames: [a.b]}', "must be a valid IP address"),
        ('{ip: "127.0.0.1", hostnames: [Not_A_Host]}', "must be a lowercase RFC 1123 subdomain"),
    ],
)
def test_a_host_alias_the_api_server_refuses_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], alias: str, said: str
) -> None:
    """core/validation ValidateHostAliases: a valid IP and DNS-1123 subdomain hostnames."""
    extra = f"  hostAliases: [{alias}]\n"
    templates = """\
    - name: main
      container: {image: alpine, command: [echo, hi]}
"""
    code, rec = run_yaml(tmp_path, workflow(templates, extra))
    assert code == 2 and rec == {}
    assert said in capsys.readouterr().err


# ---------------------------------------------------------------- hostNodeName


def test_host_node_name_is_this_machine(tmp_path: Path) -> None:
    """operator.go sets a pod node's ``HostNodeName`` from ``pod.Spec.NodeName`` and
    buildLocalScope offers it as ``{{steps.X.hostNodeName}}`` (validate.go addOutputsToScope
    puts it in every step's scope; docs/variables.md "Host node where step ran"). A local pod
    runs on this machine: its hostname, lowercased as the kubelet names its node."""
    templates = """\
    - name: main
      steps:
        - - name: first
            template: echo
            arguments: {parameters: [{name: x, value: hello}]}
        - - name: second
            template: echo
            arguments: {parameters: [{name: x, value: "{{steps.first.hostNodeName}}"}]}
    - name: echo
      inputs: {parameters: [{name: x}]}
      container: {image: alpine, command: [echo, "{{inputs.parameters.x}}"]}
"""
    code, rec = run_yaml(tmp_path, workflow(templates))
    assert code == 0, rec
    by = nodes(rec)
    expected = socket.gethostname().strip().lower()
    assert hosts.node_name() == expected
    assert by["second"]["outputs"]["result"] == expected
    assert by["first"]["hostNodeName"] == expected
    assert "hostNodeName" not in by["[0]"]  # a StepGroup runs no pod


# ---------------------------------------------------------------- http templates


class _Handler(BaseHTTPRequestHandler):
    """A real HTTP server's routes for the tests: /ok, /status/N, /echo, /secret, /slow."""

    seen: list[dict[str, Any]]

    def log_message(self, *args: Any) -> None:  # keep the test's output clean
        return

    def _reply(self, status: int, body: bytes, ctype: str = "text/plain") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("X-Served-By", "loopback")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.seen.append(
            {"method": self.command, "path": self.path, "headers": dict(self.headers), "body": body}
        )
        if self.path == "/ok":
            self._reply(200, b"hello from loopback")
        elif self.path.startswith("/status/"):
            self._reply(int(self.path.rsplit("/", 1)[1]), b"status body")
        elif self.path == "/echo":
            out = {"method": self.command, "body": body.decode(), "x": self.headers.get("X-Test")}
            self._reply(201, json.dumps(out).encode(), "application/json")
        elif self.path == "/secret":
            ok = self.headers.get("Authorization") == "Bearer s3cr3t-token-value"
            self._reply(200 if ok else 401, b"authorized" if ok else b"denied")
        elif self.path == "/slow":
            time.sleep(3)
            # the runner gave up after its timeoutSeconds, as it should: nobody reads this
            with contextlib.suppress(OSError):
                self._reply(200, b"late")
        else:
            self._reply(404, b"not found")

    do_GET = do_POST = do_PUT = _handle


@pytest.fixture
def server() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A threaded HTTP server on 127.0.0.1 (an ephemeral port): its base URL and requests."""
    seen: list[dict[str, Any]] = []
    handler = type("Handler", (_Handler,), {"seen": seen})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", seen
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def _http_workflow(http: str, after: str = "") -> str:
    templates = f"""\
    - name: main
      steps:
        - - name: call
            template: call
{after}    - name: call
      http:
{http}    - name: echo
      inputs: {{parameters: [{{name: x}}]}}
      container: {{image: alpine, command: [echo, "{{{{inputs.parameters.x}}}}"]}}
"""
    return workflow(templates)


def test_http_template_succeeds_on_2xx_and_its_body_is_the_result(
    tmp_path: Path, server: tuple[str, list[dict[str, Any]]]
) -> None:
    """agent.go executeHTTPTemplate: the body is ``outputs.result`` and, without a
    successCondition, a 2xx status succeeds; the node is an ``HTTP`` node (no pod).
    test/e2e/functional_test.go TestHTTPOutputs: the next step gets that result."""
    url, seen = server
    after = """\
        - - name: echo
            template: echo
            arguments: {parameters: [{name: x, value: "{{steps.call.outputs.result}}"}]}
"""
    code, rec = run_yaml(tmp_path, _http_workflow(f"        url: {url}/ok\n", after))
    assert code == 0, rec
    by = nodes(rec)
    assert by["call"]["type"] == "HTTP" and by["call"]["phase"] == "Succeeded"
    assert by["call"]["outputs"]["result"] == "hello from loopback"
    assert "hostNodeName" not in by["call"]
    assert by["echo"]["outputs"]["result"] == "hello from loopback"
    assert [r["method"] for r in seen] == ["GET"]  # Go's empty method is GET


def test_http_template_non_2xx_fails_with_argos_message(
    tmp_path: Path, server: tuple[str, list[dict[str, Any]]]
) -> None:
    """agent.go: without a successCondition a status outside 2xx fails the node with
    ``received non-2xx response code: N`` (the body is still its result)."""
    url, _ = server
    code, rec = run_yaml(tmp_path, _http_workflow(f"        url: {url}/status/404\n"))
    assert code != 0
    call = nodes(rec)["call"]
    assert call["phase"] == "Failed"
    assert call["message"] == "received non-2xx response code: 404"
    assert call["outputs"]["result"] == "status body"
    assert rec["status"]["phase"] == "Failed"


def test_http_template_success_condition(
    tmp_path: Path, server: tuple[str, list[dict[str, Any]]]
) -> None:
    """agent.go: ``successCondition`` is expr-lang over request.{method,url,body,headers}
    and response.{statusCode,body,headers} (headers as Go's http.Header: canonical names,
    lists of values); true succeeds whatever the status, false fails with
    ``successCondition 'TEXT' evaluated false`` (docs/http-template.md,
    examples/http-success-condition.yaml)."""
    url, seen = server
    condition = (
        'response.statusCode == 201 && response.headers["X-Served-By"][0] == "loopback" '
        '&& fromJSON(response.body).body == request.body && request.method == "POST"'
    )
    http = (
        f"        url: {url}/echo\n        method: POST\n        body: payload-1\n"
        "        headers: [{name: X-Test, value: yes-it-is}]\n"
        f"        successCondition: '{condition}'\n"
    )
    code, rec = run_yaml(tmp_path / "true", _http_workflow(http))
    assert code == 0, rec
    assert json.loads(nodes(rec)["call"]["outputs"]["result"]) == {
        "method": "POST",
        "body": "payload-1",
        "x": "yes-it-is",
    }
    assert seen[-1]["body"] == b"payload-1"
    failing = "response.statusCode == 200"
    http = f"        url: {url}/ok\n        successCondition: 'response.statusCode == 200'\n"
    code, rec = run_yaml(tmp_path / "status-ok", _http_workflow(http))
    assert code == 0, rec
    http = f"        url: {url}/status/500\n        successCondition: '{failing}'\n"
    code, rec = run_yaml(tmp_path / "false", _http_workflow(http))
    call = nodes(rec)["call"]
    assert code != 0 and call["phase"] == "Failed"
    assert call["message"] == f"successCondition '{failing}' evaluated false"
    http = (
        f"        url: {url}/status/503\n        successCondition: 'response.statusCode >= 500'\n"
    )
    code, rec = run_yaml(tmp_path / "any-status", _http_workflow(http))
    assert code == 0 and nodes(rec)["call"]["phase"] == "Succeeded"


def test_http_template_secret_header_is_sent_and_never_printed(
    tmp_path: Path,
    server: tuple[str, list[dict[str, Any]]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """agent.go executeHTTPTemplateRequest: a header's ``valueFrom.secretKeyRef`` is the
    Secret's key (found locally as a pod's secrets are: ``<SECRET>_<KEY>``); the request
    headers a successCondition sees leave it out (HTTPHeaders.ToHeader). Its value appears in
    nothing the runner writes."""
    url, seen = server
    token = "Bearer s3cr3t-token-value"
    monkeypatch.setenv("API_AUTH", token)
    http = (
        f"        url: {url}/secret\n"
        "        headers:\n"
        "          - name: Authorization\n"
        "            valueFrom: {secretKeyRef: {name: api, key: auth}}\n"
        '        successCondition: \'response.body == "authorized" && '
        "len(request.headers) == 0'\n"
    )
    code, rec = run_yaml(tmp_path, _http_workflow(http))
    out = capsys.readouterr()
    assert code == 0, rec
    assert seen[-1]["headers"]["Authorization"] == token
    assert nodes(rec)["call"]["outputs"]["result"] == "authorized"
    written = out.out + out.err + "".join(p.read_text() for p in tmp_path.rglob("*.json"))
    assert "s3cr3t-token-value" not in written
    monkeypatch.delenv("API_AUTH")
    code, rec = run_yaml(tmp_path / "missing", _http_workflow(http))
    call = nodes(rec)["call"]
    assert code != 0 and call["phase"] == "Failed"
    assert "secret api/auth not found locally" in call["message"]


def test_http_template_request_errors_fail_the_node(
    tmp_path: Path, server: tuple[str, list[dict[str, Any]]]
) -> None:
    """agent.go: a request that cannot be made returns its error, and the node Fails with it
    (Go's url.Error: ``Get "URL": ...``); ``timeoutSeconds`` bounds the request."""
    url, _ = server
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}/"
    code, rec = run_yaml(tmp_path / "refused", _http_workflow(f"        url: {closed}\n"))
    call = nodes(rec)["call"]
    assert code != 0 and call["phase"] == "Failed"
    assert call["message"] == f'Get "{closed}": connect: connection refused'
    http = f"        url: {url}/slow\n        timeoutSeconds: 1\n"
    started = time.monotonic()
    code, rec = run_yaml(tmp_path / "slow", _http_workflow(http))
    assert time.monotonic() - started < 3
    call = nodes(rec)["call"]
    assert call["phase"] == "Failed"
    assert call["message"] == f'Get "{url}/slow": context deadline exceeded'


@pytest.mark.bwrap
def test_an_output_reads_the_pods_own_etc_hosts_and_passes_to_a_later_task(
    tmp_path: Path,
) -> None:
    """test/e2e/functional/dag-argument-passing.yaml: an output parameter ``valueFrom.path:
    /etc/hosts`` is the pod's hosts file (the kubelet's, pods/hosts.py), and a task may take an
    artifact ``from`` a task it depends on only through another (validate.go
    validateDAGTaskArgumentDependency checks common.GetTaskAncestry, not direct dependencies)."""
    templates = """\
    - name: main
      dag:
        tasks:
          - name: a
            template: hosts
          - name: b
            dependencies: [a]
            template: hosts
          - name: c
            dependencies: [b]
            template: echo
            arguments:
              parameters: [{name: x, value: "{{tasks.a.outputs.parameters.hosts}}"}]
              artifacts: [{name: art, from: "{{tasks.a.outputs.artifacts.out}}"}]
    - name: hosts
      container: {image: alpine, command: [sh, -c, "echo kept > /tmp/out.txt"]}
      outputs:
        parameters: [{name: hosts, valueFrom: {path: /etc/hosts}}]
        artifacts: [{name: out, path: /tmp/out.txt}]
    - name: echo
      inputs:
        parameters: [{name: x}]
        artifacts: [{name: art, path: /tmp/in.txt}]
      container: {image: alpine, command: [sh, -c, 'echo "{{inputs.parameters.x}}"; cat /tmp/in.txt']}
"""
    code, rec = run_yaml(tmp_path, workflow(templates), "--sandbox", "bwrap")
    assert code == 0, rec
    by = nodes(rec)
    hosts_a = by["a"]["outputs"]["parameters"][0]["value"]
    pod_a = rec["workersRunner"]["pods"][by["a"]["id"]]["podName"]
    assert hosts_a.startswith("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n")
    assert hosts_a.endswith(f"127.0.0.1\t{pod_a}")  # outputs are trimmed as Argo trims them
    assert by["c"]["outputs"]["result"] == hosts_a + "\nkept"
