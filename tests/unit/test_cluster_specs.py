"""The cluster specs (cluster/, infra/) checked offline: no cloud, no Kubernetes, no Docker.

- every YAML parses; the launcher config passes Ray's own schema and checks;
- Serve configs pass ray.serve.schema.ServeDeploySchema, and the RayService's serveConfigV2 is serve.yaml with
  only the listed overrides (and the manifest is what cluster/render_rayservice.py renders now);
- KubeRay manifests carry the fields the operator needs, with rayVersion and image tags equal to ray.__version__;
- every `python -m <module>` entrypoint names a real CLI whose --help runs, and its flags parse with that CLI's
  parser (argparse, nothing run);
- infra/storage.yaml passes cfn-lint and grants exactly the access it promises; the Dockerfile's FROM matches Ray.
"""

from __future__ import annotations

import copy
import importlib
import importlib.util
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import ray
import yaml

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = ROOT / "cluster"
KUBERAY = CLUSTER / "kuberay"
INFRA = ROOT / "infra"
RAY_VERSION = ray.__version__


def _load(path: Path):
    return yaml.safe_load(path.read_text())


def _kuberay(kind: str | None = None) -> dict[str, dict]:
    docs = {p.name: _load(p) for p in sorted(KUBERAY.glob("*.yaml"))}
    return {n: d for n, d in docs.items() if kind is None or d["kind"] == kind}


def _cluster_specs(doc: dict) -> list[dict]:
    """The RayCluster spec(s) inside any KubeRay kind."""
    spec = doc["spec"]
    return [{"RayCluster": spec, "RayJob": spec.get("rayClusterSpec"), "RayService": spec.get("rayClusterConfig")}[
        doc["kind"]]]


def _images(cluster_spec: dict) -> list[str]:
    groups = [cluster_spec["headGroupSpec"], *cluster_spec["workerGroupSpecs"]]
    return [c["image"] for g in groups for c in g["template"]["spec"]["containers"]]


# ---------------------------------------------------------------- parsing


def test_every_yaml_parses():
    import_yaml = [*CLUSTER.rglob("*.yaml")]
    assert {p.relative_to(CLUSTER).as_posix() for p in import_yaml} >= {
        "aws.yaml", "serve.yaml", "runtime_env.yaml", "kuberay/raycluster.yaml", "kuberay/rayjob-preprocess.yaml",
        "kuberay/rayjob-train.yaml", "kuberay/rayjob-bulk.yaml", "kuberay/rayservice.yaml"}
    for path in import_yaml:
        assert isinstance(_load(path), dict), path


# ---------------------------------------------------------------- AWS cluster launcher


def test_aws_launcher_config_passes_rays_schema():
    from ray.autoscaler._private.util import prepare_config, validate_config

    raw = _load(CLUSTER / "aws.yaml")
    config = prepare_config(copy.deepcopy(raw))  # what `ray up` does: fill provider defaults, then validate
    validate_config(config)
    assert config["provider"]["type"] == "aws"

    head = raw["available_node_types"][raw["head_node_type"]]
    workers = {k: v for k, v in raw["available_node_types"].items() if k != raw["head_node_type"]}
    assert workers, "no worker node type"
    for node in [head, *workers.values()]:
        assert node["node_config"]["IamInstanceProfile"]["Arn"].startswith("arn:aws:iam::")
    (gpu,) = [w for w in workers.values() if w["node_config"]["InstanceType"].startswith(("g", "p"))]
    assert gpu["min_workers"] == 0 and gpu["max_workers"] >= 2  # autoscaling from zero
    assert gpu["node_config"]["InstanceMarketOptions"]["MarketType"] == "spot"

    docker = raw["docker"]
    for key in ("image", "head_image", "worker_image"):
        assert docker[key].startswith(f"rayproject/ray:{RAY_VERSION}-py311"), docker[key]
    assert docker["worker_image"].endswith("-gpu")
    for name, node in raw["available_node_types"].items():
        for image in node.get("docker", {}).values():
            assert image.startswith(f"rayproject/ray:{RAY_VERSION}-py311"), (name, image)
    assert any("-c infra/requirements.lock -e ." in c for c in raw["setup_commands"])
    assert "." in raw["file_mounts"].values()


def test_runtime_env_is_accepted_by_ray():
    from ray.runtime_env import RuntimeEnv

    env = _load(CLUSTER / "runtime_env.yaml")
    RuntimeEnv(**env)
    assert env["working_dir"] == "."
    assert {".venv/", ".git/", "artifacts/"} <= set(env["excludes"])
    assert env["env_vars"]["AWS_REGION"]
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "MUSICGEN_API_TOKEN"):
        assert key not in env["env_vars"], "secrets come from the nodes, never from the spec"


# ---------------------------------------------------------------- Serve configs


def test_serve_yaml_passes_serve_schema_and_its_import_path_exists():
    from ray.serve.schema import ServeDeploySchema

    config = _load(CLUSTER / "serve.yaml")
    ServeDeploySchema.model_validate(config)
    for app in config["applications"]:
        module, attr = app["import_path"].split(":")
        assert callable(getattr(importlib.import_module(module), attr))


def test_rayservice_serve_config_is_serve_yaml_with_only_the_listed_overrides():
    from ray.serve.schema import ServeDeploySchema

    sys.path.insert(0, str(CLUSTER))
    try:
        import render_rayservice as render
    finally:
        sys.path.remove(str(CLUSTER))

    assert render.main(["--check"]) == 0, "rerun python cluster/render_rayservice.py"
    (doc,) = _kuberay("RayService").values()
    embedded = yaml.safe_load(doc["spec"]["serveConfigV2"])
    ServeDeploySchema.model_validate(embedded)

    expected = _load(CLUSTER / "serve.yaml")
    assert embedded["http_options"]["host"] == "0.0.0.0"
    assert embedded["applications"][0]["args"]["model"].startswith("s3://")
    # undo exactly the declared overrides: what is left must be serve.yaml unchanged
    assert set(render.OVERRIDES) == {("http_options", "host"), ("applications", "musicgen", "args", "model")}
    embedded["http_options"]["host"] = expected["http_options"]["host"]
    embedded["applications"][0]["args"]["model"] = expected["applications"][0]["args"]["model"]
    assert embedded == expected
    assert doc["spec"]["rayClusterConfig"] == _load(KUBERAY / "raycluster.yaml")["spec"]


# ---------------------------------------------------------------- KubeRay


def test_kuberay_manifests_have_the_required_fields():
    docs = _kuberay()
    assert sorted(d["kind"] for d in docs.values()) == ["RayCluster", "RayJob", "RayJob", "RayJob", "RayService"]
    for name, doc in docs.items():
        assert doc["apiVersion"] == "ray.io/v1", name
        assert doc["metadata"]["name"], name
        for spec in _cluster_specs(doc):
            assert spec["rayVersion"] == RAY_VERSION, name
            assert spec["enableInTreeAutoscaling"] is True, name
            head = spec["headGroupSpec"]
            assert head["rayStartParams"]["dashboard-host"] == "0.0.0.0"
            assert spec["workerGroupSpecs"], name
            for group in spec["workerGroupSpecs"]:
                assert group["groupName"] and 0 <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
                assert group["maxReplicas"] >= 2, f"{name}: the worker group cannot scale"
            for image in _images(spec):
                repo, _, tag = image.rpartition(":")
                assert repo and tag.startswith(f"{RAY_VERSION}-"), f"{name}: {image} is not tagged {RAY_VERSION}"
    raycluster = docs["raycluster.yaml"]["spec"]
    (gpu,) = raycluster["workerGroupSpecs"]
    limits = gpu["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert limits["nvidia.com/gpu"] == "1"


def test_rayjobs_submit_the_pipelines_on_s3_and_clean_up():
    jobs = _kuberay("RayJob")
    modules = {}
    for name, doc in jobs.items():
        spec = doc["spec"]
        assert spec["shutdownAfterJobFinishes"] is True, name
        assert spec["rayClusterSpec"], name
        env = yaml.safe_load(spec["runtimeEnvYAML"])
        assert env["env_vars"]["AWS_REGION"], name
        argv = shlex.split(spec["entrypoint"])
        assert argv[:2] == ["python", "-m"], name
        modules[argv[2]] = argv[3:]
        uris = [a for a in argv if "://" in a]
        assert uris and all(u.startswith("s3://") for u in uris), name
    assert set(modules) == {"pipelines.preprocess", "pipelines.train", "pipelines.bulk_generate"}


# ---------------------------------------------------------------- entrypoints vs the real CLIs


def _entrypoints() -> list[tuple[str, list[str]]]:
    """(module or `musicgen`, args) for every command a spec runs."""
    found = []
    for doc in _kuberay("RayJob").values():
        argv = shlex.split(doc["spec"]["entrypoint"])
        found.append((argv[2], argv[3:]) if argv[:2] == ["python", "-m"] else ("musicgen", argv[1:]))
    return found


def _subcommand(module: str) -> str:
    """The `musicgen` subcommand a pipeline module runs (it calls musicgen.cli.main([<sub>, *argv]))."""
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin, f"no module {module}"
    match = re.search(r"main\(\[\s*\"([\w-]+)\"", Path(spec.origin).read_text())
    assert match, f"{module} does not delegate to musicgen.cli.main"
    return match.group(1)


def test_entrypoint_flags_parse_with_the_real_parsers():
    from musicgen.cli import build_parser

    entrypoints = _entrypoints()
    assert entrypoints
    for module, args in entrypoints:
        argv = [_subcommand(module), *args] if module != "musicgen" else args
        try:
            parsed = build_parser().parse_args(argv)
        except SystemExit as exc:  # argparse reports unknown or malformed flags this way
            pytest.fail(f"{module} {' '.join(args)}: rejected by the parser ({exc})")
        assert parsed.command == argv[0]
        for flag in (a for a in args if a.startswith("--")):  # no flag silently taken as an abbreviation
            name = flag.split("=", 1)[0]
            assert any(name in action.option_strings for action in _subparser(argv[0])._actions), name


def _subparser(command: str):
    from musicgen.cli import build_parser

    parser = build_parser()
    (sub,) = [a for a in parser._actions if a.dest == "command"]
    return sub.choices[command]


def test_every_named_cli_runs_help():
    commands = {(sys.executable, "-m", m) for m, _ in _entrypoints() if m != "musicgen"}
    musicgen = str(Path(sys.executable).with_name("musicgen"))
    commands |= {(musicgen, "serve")}  # the RayService's application is what `musicgen serve` runs
    procs = {c: subprocess.Popen([*c, "--help"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
             for c in sorted(commands)}
    for command, proc in procs.items():
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, f"{command}: {err[-2000:]}"
        assert out.startswith("usage:"), command


# ---------------------------------------------------------------- infra


def _cfn_template() -> dict:
    cfn_yaml = pytest.importorskip("cfnlint.decode.cfn_yaml")
    return cfn_yaml.load(str(INFRA / "storage.yaml"))


def test_storage_template_passes_cfn_lint():
    pytest.importorskip("cfnlint")
    from cfnlint.api import lint_file

    matches = lint_file(INFRA / "storage.yaml")
    assert not matches, "\n".join(str(m) for m in matches)


def test_storage_template_grants_exactly_the_promised_access():
    template = _cfn_template()
    resources = template["Resources"]
    bucket = resources["Bucket"]["Properties"]
    assert bucket["VersioningConfiguration"]["Status"] == "Enabled"
    assert all(bucket["PublicAccessBlockConfiguration"][k] is True for k in (
        "BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"))
    rules = {r["Id"]: r for r in bucket["LifecycleConfiguration"]["Rules"]}
    assert any(r.get("Prefix") == "runs/" and "NoncurrentVersionExpiration" in r for r in rules.values())
    assert any(r.get("Prefix") == "catalogs/" and r.get("Transitions") for r in rules.values())
    assert any("AbortIncompleteMultipartUpload" in r for r in rules.values())

    statements = resources["BucketAccessPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert all(s["Effect"] == "Allow" for s in statements)
    grants: dict[str, set[str]] = {}
    for s in statements:
        actions = [s["Action"]] if isinstance(s["Action"], str) else s["Action"]
        targets = s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]]
        for target in targets:
            # {"Fn::GetAtt": ["Bucket", "Arn"]} is the bucket; {"Fn::Sub": "${Bucket.Arn}/x/*"} a prefix
            key = target["Fn::Sub"].replace("${Bucket.Arn}", "") if "Fn::Sub" in target else "<bucket>"
            assert "Fn::GetAtt" in target or "Fn::Sub" in target, target
            grants.setdefault(key, set()).update(actions)
            assert all("*" not in a for a in actions), f"wildcard action {actions}"
    assert grants == {
        "<bucket>": {"s3:ListBucket", "s3:GetBucketLocation"},
        "/corpora/*": {"s3:GetObject"},
        **{f"/{p}/*": {"s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload",
                       "s3:ListMultipartUploadParts"} for p in ("shards", "runs", "catalogs")},
    }
    assert resources["NodeInstanceProfile"]["Type"] == "AWS::IAM::InstanceProfile"
    assert [p for p, r in resources.items() if r["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy")] == [
        "BucketAccessPolicy"], "one policy only"
    assert "ManagedPolicyArns" not in resources["NodeRole"]["Properties"]
    assert "Policies" not in resources["NodeRole"]["Properties"]


def test_dockerfile_from_matches_the_pinned_ray():
    text = (INFRA / "Dockerfile").read_text()
    froms = re.findall(r"^FROM\s+(\S+)", text, flags=re.M)
    assert froms == ["rayproject/ray:" + RAY_VERSION + "-py311${VARIANT}"], froms
    variant = re.search(r"^ARG VARIANT=(\S+)", text, flags=re.M).group(1)
    assert variant in ("-cpu", "-gpu")
    assert "-c infra/requirements.lock" in text and "torch==2.13.0" in text
    lock = (INFRA / "requirements.lock").read_text()
    assert f"ray=={RAY_VERSION}" in lock.split() and "torch==2.13.0" in lock.split()
