"""Offline checks of the cluster configs: cluster.yaml (Ray cluster launcher, AWS) through Ray's own
config preparation and JSON-schema validation, deploy/kuberay-rayjob.yaml (KubeRay RayJob) by structure,
and the documented job commands against the project's CLI. No cloud API is called (`ray up` has no dry run)."""

from __future__ import annotations

import copy
import json
import re
import shlex
from pathlib import Path

import jsonschema
import pytest
import ray
import tomllib
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

REPO = Path(__file__).resolve().parents[1]
CLUSTER_YAML = REPO / "cluster.yaml"
RAYJOB_YAML = REPO / "deploy" / "kuberay-rayjob.yaml"
S3_POLICY = REPO / "deploy" / "s3-policy.json"
CLUSTER_DOC = REPO / "docs" / "cluster.md"
ENTRY_POINT = "jobs/diarize_corpus.py"
DOCKERFILE = REPO / "Dockerfile"
BASE_IMAGE = f"rayproject/ray:{ray.__version__}-py311-gpu"
IMAGE = yaml.safe_load(CLUSTER_YAML.read_text(encoding="utf-8"))["docker"]["image"]  # built from DOCKERFILE


@pytest.fixture(scope="module")
def raw_config() -> dict:
    return yaml.safe_load(CLUSTER_YAML.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def config(raw_config) -> dict:
    """cluster.yaml as `ray up` sees it: merged with Ray's AWS defaults, then schema-validated."""
    prepared = prepare_config(copy.deepcopy(raw_config))
    validate_config(prepared)
    return prepared


def gpu_node_types(config: dict) -> dict[str, dict]:
    return {name: spec for name, spec in config["available_node_types"].items() if spec["resources"].get("GPU", 0) > 0}


def pip_installs(commands: list[str]) -> list[list[str]]:
    """The argument lists of every `pip install` in `commands` (each may be `a; b && c`)."""
    found = []
    for command in commands:
        for part in re.split(r"&&|;|\|\|", command):
            words = shlex.split(part)
            for i in range(len(words) - 1):
                if words[i].endswith("pip") and words[i + 1] == "install":
                    found.append(words[i + 2 :])
    return found


def test_cluster_yaml_passes_rays_own_validation(raw_config, config):
    assert config["provider"]["type"] == "aws"
    assert config["head_node_type"] in config["available_node_types"]
    # fillout_defaults merges only top-level keys, from Ray's example AWS defaults (whose setup_commands
    # pip-install a Ray nightly wheel): every such key must be set in cluster.yaml itself.
    for key in (
        "setup_commands",
        "head_setup_commands",
        "worker_setup_commands",
        "head_start_ray_commands",
        "worker_start_ray_commands",
        "file_mounts",
        "docker",
        "auth",
        "max_workers",
    ):
        assert key in raw_config, f"cluster.yaml leaves {key!r} to Ray's defaults"


def test_validation_is_live(raw_config):
    """The same validation rejects what Ray would reject: fractional resources, unknown fields.
    (The schema's "integer" accepts 4.0, hence the type check in test_node_resources_are_integers.)"""
    fractional = copy.deepcopy(raw_config)
    name = next(iter(gpu_node_types(fractional)))
    fractional["available_node_types"][name]["resources"]["GPU"] = 0.5
    with pytest.raises(jsonschema.ValidationError):
        validate_config(prepare_config(fractional))
    unknown = copy.deepcopy(raw_config)
    unknown["available_node_types"][name]["gpus"] = 1
    with pytest.raises(jsonschema.ValidationError):
        validate_config(prepare_config(unknown))


def test_gpu_worker_type_autoscales(config):
    gpu_types = gpu_node_types(config)
    assert len(gpu_types) == 1, f"expected one GPU worker type, got {sorted(gpu_types)}"
    ((name, spec),) = gpu_types.items()
    assert name != config["head_node_type"]
    assert 0 <= spec["min_workers"] < spec["max_workers"] <= config["max_workers"]
    assert spec["min_workers"] == 0, "idle GPU nodes should scale to zero"
    assert re.fullmatch(r"g[56]\.\w+", spec["node_config"]["InstanceType"])
    head = config["available_node_types"][config["head_node_type"]]
    assert head["max_workers"] == 0 and head["resources"].get("GPU", 0) == 0
    assert config["idle_timeout_minutes"] > 0


def test_node_resources_are_integers(raw_config, config):
    for source in (raw_config, config):
        for name, spec in source["available_node_types"].items():
            assert spec["resources"], f"{name}: resources must be explicit"
            for resource, amount in spec["resources"].items():
                assert type(amount) is int and amount >= 0, f"{name}.resources.{resource} = {amount!r}"
    (gpu,) = gpu_node_types(config).values()
    assert gpu["resources"]["GPU"] >= 1 and gpu["resources"]["CPU"] >= 1


def test_docker_image_matches_installed_ray_and_python_311(config):
    docker = config["docker"]
    assert docker["image"] == IMAGE
    assert docker["container_name"]
    for key in ("head_image", "worker_image"):
        assert docker.get(key, IMAGE) == IMAGE
    for spec in config["available_node_types"].values():
        assert spec.get("docker", {}).get("worker_image", IMAGE) == IMAGE
    # The image's Ray is the one the project pins (and the client runs).
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    pins = [dep for dep in pyproject["project"]["dependencies"] if re.match(r"ray(\[.*\])?\s*==", dep)]
    assert pins and all(dep.split("==")[1].strip() == ray.__version__ for dep in pins), pins


def test_dockerfile_bakes_project_and_weights_into_the_cluster_image():
    """One image for both deployments, built on the Ray image the project pins; it installs the project
    (torch and the weight-carrying packages with it) and loads the model once, so the weights are in it."""
    lines = [line.strip() for line in DOCKERFILE.read_text(encoding="utf-8").replace("\\\n", " ").splitlines()]
    assert [line for line in lines if line.startswith("FROM ")] == [f"FROM {BASE_IMAGE}"]
    runs = " ".join(line for line in lines if line.startswith("RUN "))
    assert re.search(r"pip install [^&]*-e \.", runs) and "load_model('default'" in runs
    assert any(line.startswith("COPY") and " pipeline " in f"{line} " for line in lines)
    assert not IMAGE.startswith("rayproject/"), "cluster.yaml should run the project's image"
    ignored = (REPO / ".dockerignore").read_text(encoding="utf-8").split()
    assert {".venv", "outputs", "data"} <= set(ignored)


def test_setup_installs_the_project(config):
    mounts = config["file_mounts"]
    for role in ("head_setup_commands", "worker_setup_commands"):  # setup_commands already merged in
        installs = [args for args in pip_installs(config[role]) if "-e" in args or "--editable" in args]
        assert installs, f"{role} never runs `pip install -e <project>`"
        for args in installs:
            flag = "-e" if "-e" in args else "--editable"
            target = args[args.index(flag) + 1]
            assert target in mounts, f"{target} is not a file mount"
            local = Path(mounts[target])
            assert (REPO / local).resolve() == REPO, f"{target} is synced from {local}, not the repository root"
    for name, spec in config["available_node_types"].items():  # a per-type list would replace the global one
        if "worker_setup_commands" in spec:
            assert pip_installs(spec["worker_setup_commands"]), f"{name} overrides worker_setup_commands"
    assert ".gitignore" in config["rsync_filter"]
    ignored = (REPO / ".gitignore").read_text(encoding="utf-8").split()
    assert ".venv/" in ignored, "the local venv would be uploaded to every node"


def test_iam_instance_profiles_and_s3_policy(config):
    for name, spec in config["available_node_types"].items():
        profile = spec["node_config"].get("IamInstanceProfile", {})
        assert profile.get("Name") or profile.get("Arn"), f"{name} has no IamInstanceProfile (no S3 access)"
    policy = json.loads(S3_POLICY.read_text(encoding="utf-8"))
    assert policy["Version"] == "2012-10-17"
    actions = set()
    for statement in policy["Statement"]:
        assert statement["Effect"] == "Allow"
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        assert all(r.startswith("arn:aws:s3:::") for r in resources)
        actions |= set(statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]])
    assert {"s3:ListBucket", "s3:GetObject", "s3:PutObject", "s3:DeleteObject"} <= actions


@pytest.fixture(scope="module")
def manifests() -> list[dict]:
    return [d for d in yaml.safe_load_all(RAYJOB_YAML.read_text(encoding="utf-8")) if d]


@pytest.fixture(scope="module")
def rayjob(manifests) -> dict:
    jobs = [d for d in manifests if d.get("kind") == "RayJob"]
    assert len(jobs) == 1, "deploy/kuberay-rayjob.yaml should hold exactly one RayJob"
    return jobs[0]


def containers(group: dict) -> list[dict]:
    return group["template"]["spec"]["containers"]


def test_kuberay_rayjob_structure(manifests, rayjob):
    assert rayjob["apiVersion"] == "ray.io/v1"
    spec = rayjob["spec"]
    words = shlex.split(spec["entrypoint"])
    assert words[:2] == ["python", ENTRY_POINT] and (REPO / ENTRY_POINT).is_file()
    assert words[words.index("--gpus-per-actor") + 1] == "1"
    assert all(
        str(w).startswith("s3://") for w in (words[words.index("--manifest") + 1], words[words.index("--output") + 1])
    )
    runtime_env = yaml.safe_load(spec.get("runtimeEnvYAML", "{}"))  # a string holding YAML
    assert "pip" not in runtime_env, "the image already holds the dependencies"
    assert isinstance(spec["activeDeadlineSeconds"], int) and spec["activeDeadlineSeconds"] > 0

    cluster = spec["rayClusterSpec"]
    assert cluster["rayVersion"] == ray.__version__
    head = cluster["headGroupSpec"]
    service_accounts = {d["metadata"]["name"] for d in manifests if d.get("kind") == "ServiceAccount"}
    groups = [head, *cluster["workerGroupSpecs"]]
    for group in groups:
        assert all(isinstance(v, str) for v in group.get("rayStartParams", {}).values()), "rayStartParams are strings"
        assert containers(group) and all(c["image"] == IMAGE for c in containers(group))
        account = group["template"]["spec"].get("serviceAccountName")
        assert account in (None, "default", *service_accounts), f"service account {account} is not defined"

    gpu_groups = [
        g
        for g in cluster["workerGroupSpecs"]
        if int(containers(g)[0]["resources"]["limits"].get("nvidia.com/gpu", 0)) >= 1
    ]
    assert len(gpu_groups) == 1
    (gpu,) = gpu_groups
    resources = containers(gpu)[0]["resources"]
    assert resources["requests"]["nvidia.com/gpu"] == resources["limits"]["nvidia.com/gpu"]
    assert cluster.get("enableInTreeAutoscaling") is True
    assert (
        0 <= gpu["minReplicas"] <= gpu.get("replicas", 0) <= gpu["maxReplicas"]
        and gpu["minReplicas"] < gpu["maxReplicas"]
    )
    assert "nvidia.com/gpu" not in containers(head)[0]["resources"].get("limits", {})


def documented_submit_command() -> list[str]:
    """The `ray job submit ...` command of docs/cluster.md, as the shell would split it."""
    text = CLUSTER_DOC.read_text(encoding="utf-8")
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        joined = block.replace("\\\n", " ")
        for line in joined.splitlines():
            if line.strip().startswith("ray job submit"):
                return shlex.split(line, comments=True)
    raise AssertionError("docs/cluster.md has no `ray job submit` command")


def test_documented_commands_match_the_cli_and_cluster(config, rayjob):
    from pipeline.cli import build_parser

    submit = documented_submit_command()
    options = submit[: submit.index("--")]
    assert options[options.index("--working-dir") + 1] == "."
    assert options[options.index("--address") + 1].startswith("http://")
    entry = submit[submit.index("--") + 1 :]
    assert entry[:2] == ["python", ENTRY_POINT]

    (gpu,) = gpu_node_types(config).values()
    for words in (entry, shlex.split(rayjob["spec"]["entrypoint"])):
        args = build_parser().parse_args(["diarize", *words[2:]])
        assert args.gpus_per_actor == 1
        most_actors = int(str(args.num_actors).split(",")[-1])
        assert most_actors * args.gpus_per_actor <= gpu["max_workers"] * gpu["resources"]["GPU"], (
            "--num-actors asks for more GPUs than the GPU worker type can ever provide"
        )
