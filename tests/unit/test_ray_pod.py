"""The Ray pods and head Service built for each example, field by field."""

import copy
import os
import subprocess

import pytest
from ray.autoscaler._private.constants import RAY_PROCESSES

from autoscaler_bridge.cluster_config import autoscaler_config
from autoscaler_bridge.pod_resources import ray_container_index
from autoscaler_bridge.ray_pod import (
    STOP_RAY_ON_TERM,
    build_head_disruption_budget,
    build_head_service,
    build_ray_pod,
    drain_timing,
    pod_name_prefix,
    ray_script,
)
from tests.harness.files import example_rayclusters
from tests.harness.waiting import wait_for

EXAMPLES = [(name, {**rc, "metadata": {**rc["metadata"], "uid": "uid-1"}}) for name, rc in example_rayclusters()]
OWNER = {
    "apiVersion": "cluster.ray.io/v1",
    "kind": "RayCluster",
    "name": "example-cluster",
    "uid": "uid-1",
    "controller": True,
    "blockOwnerDeletion": True,
}


def tags(kind, pod_type):
    return {
        "ray-node-type": kind,
        "ray-user-node-type": pod_type,
        "ray-node-status": "uninitialized",
        "ray-launch-config": "h" * 40,
        "ray-node-name": f"ray-example-cluster-{kind}",
    }


def pods_of(raycluster):
    """(kind, podType, podType spec, built pod) for the head and one worker of every podType."""
    config = autoscaler_config(raycluster)
    namespace = config["provider"]["namespace"]
    head_type = config["head_node_type"]
    for pod_type in raycluster["spec"]["podTypes"]:
        kinds = ["worker"] + (["head"] if pod_type["name"] == head_type else [])
        node_type = config["available_node_types"][pod_type["name"]]
        for kind in kinds:
            pod = build_ray_pod(
                config["provider"],
                "example-cluster",
                node_type["node_config"],
                tags(kind, pod_type["name"]),
                node_type["resources"],
            )
            yield kind, pod_type, node_type, namespace, pod


@pytest.mark.parametrize("example", EXAMPLES, ids=[e[0] for e in EXAMPLES])
def test_pods_of_every_example(example):
    _, raycluster = example
    for kind, pod_type, node_type, namespace, pod in pods_of(copy.deepcopy(raycluster)):
        template = pod_type["podConfig"]
        index = ray_container_index(template)
        container = pod["spec"]["containers"][index]
        user_container = template["spec"]["containers"][index]
        meta = pod["metadata"]

        assert pod["apiVersion"] == "v1" and pod["kind"] == "Pod"
        assert meta["namespace"] == namespace
        assert meta["generateName"] == pod_name_prefix("example-cluster", pod_type["name"])
        assert meta["labels"] == {
            **((template.get("metadata") or {}).get("labels") or {}),
            "app.kubernetes.io/name": "ray",
            "app.kubernetes.io/instance": "example-cluster",
            "app.kubernetes.io/component": f"ray-{kind}",
            "app.kubernetes.io/managed-by": "ray-operator",
            **tags(kind, pod_type["name"]),
            "ray-cluster-name": "example-cluster",
        }
        assert meta["ownerReferences"] == [OWNER]
        assert "name" not in meta

        # The Ray container runs the start commands in place of the placeholder command.
        assert container["command"] == ["/bin/bash", "-c"]
        [script] = container["args"]
        assert "sleep infinity" not in script
        assert "ray stop" in script
        start = next(line for line in script.splitlines() if "ray start --" in line)  # not the drain code's words
        assert "--block" in start
        assert ("--no-monitor" in start) == (kind == "head")
        assert ("--head" in start) == (kind == "head")
        assert "--node-ip-address=$MY_POD_IP" in start
        resources = node_type["resources"]
        assert f"--num-cpus={resources['CPU']}" in start
        assert ("--num-gpus=" in start) == ("GPU" in resources)
        if "GPU" in resources:
            assert f"--num-gpus={resources['GPU']}" in start
        assert f"--memory={resources['memory']}" in start

        env = {e["name"]: e for e in container["env"]}
        assert env["MY_POD_IP"]["valueFrom"] == {"fieldRef": {"fieldPath": "status.podIP"}}
        assert env["RAY_HEAD_IP"]["value"] == f"example-cluster-ray-head.{namespace}.svc.cluster.local"
        assert env["RAY_NODE_TYPE_NAME"]["value"] == pod_type["name"]
        for user_env in user_container.get("env", []):
            assert env[user_env["name"]] == user_env

        shm = [m for m in container["volumeMounts"] if m["mountPath"] == "/dev/shm"]
        assert len(shm) == 1
        [volume] = [v for v in pod["spec"]["volumes"] if v["name"] == shm[0]["name"]]
        # Ray's object store is memory, sized to what the pod was given.
        assert volume["emptyDir"] == {
            "medium": "Memory",
            "sizeLimit": str(user_container["resources"]["limits"]["memory"]),
        }
        assert pod["spec"]["automountServiceAccountToken"] is False  # Ray needs no Kubernetes API

        # User fields survive untouched.
        for key in ("image", "ports", "imagePullPolicy"):
            assert container.get(key) == user_container.get(key)
        # Quantities are kept, in the string form the API stores them in.
        assert container["resources"] == {
            section: {k: str(v) for k, v in values.items()} for section, values in user_container["resources"].items()
        }
        for key in ("nodeSelector", "tolerations", "restartPolicy"):
            assert pod["spec"].get(key) == template["spec"].get(key)
        kept = pod["spec"]["volumes"][: len(template["spec"].get("volumes", []))]
        assert [
            {**v, "emptyDir": {k: x for k, x in v["emptyDir"].items() if k != "sizeLimit"}}
            if v["name"] == shm[0]["name"]
            else v
            for v in kept
        ] == template["spec"].get("volumes", [])


@pytest.mark.parametrize("example", EXAMPLES, ids=[e[0] for e in EXAMPLES])
def test_head_service_of_every_example(example):
    _, raycluster = example
    config = autoscaler_config(raycluster)
    head_config = config["available_node_types"][config["head_node_type"]]["node_config"]
    service = build_head_service(config["provider"], "example-cluster", head_config)
    assert service["metadata"]["name"] == "example-cluster-ray-head"
    assert service["metadata"]["namespace"] == config["provider"]["namespace"]
    assert service["metadata"]["ownerReferences"] == [OWNER]
    assert service["metadata"]["labels"]["app.kubernetes.io/instance"] == "example-cluster"
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["selector"] == {"ray-cluster-name": "example-cluster", "ray-node-type": "head"}
    ports = {p["name"]: p["port"] for p in service["spec"]["ports"]}
    assert {"gcs": 6379, "dashboard": 8265, "client": 10001, "metrics": 8080}.items() <= ports.items()
    declared = {p["containerPort"] for c in head_config["spec"]["containers"] for p in c.get("ports", [])}
    assert declared <= set(ports.values())
    assert len(set(ports.values())) == len(ports)
    assert all(p["targetPort"] == p["port"] and p["protocol"] == "TCP" for p in service["spec"]["ports"])


def test_the_head_disruption_budget_guards_the_head_pod_alone():
    owner = {"apiVersion": "cluster.ray.io/v1", "kind": "RayCluster", "name": "c", "uid": "u1"}
    budget = build_head_disruption_budget(provider(owner=owner), "c")
    assert budget["metadata"]["name"] == "c-ray-head" and budget["metadata"]["namespace"] == "ns"
    assert budget["metadata"]["labels"]["ray-cluster-name"] == "c"  # the operator's caches select by it
    assert budget["metadata"]["ownerReferences"] == [{**owner, "controller": True, "blockOwnerDeletion": True}]
    assert budget["spec"] == {
        "minAvailable": 1,
        "selector": {"matchLabels": {"ray-cluster-name": "c", "ray-node-type": "head"}},
        "unhealthyPodEvictionPolicy": "AlwaysAllow",
    }  # a broken head does not block a drain


def provider(**extra):
    return {
        "namespace": "ns",
        "owner": {"apiVersion": "cluster.ray.io/v1", "kind": "RayCluster", "name": "c"},
        "head_start_ray_commands": ["ray start --head --port=7000"],
        "worker_start_ray_commands": ["ray start --address=$RAY_HEAD_IP:7000"],
        **extra,
    }


def test_service_port_overrides_gcs_port_and_custom_ports():
    ports = build_head_service(
        provider(
            head_service_ports=[
                {"name": "dashboard", "port": 9000, "targetPort": 8265},
                {"name": "grpc", "port": 9001, "targetPort": "grpc"},
            ]
        ),
        "c",
        {"spec": {"containers": [{"name": "ray-node", "ports": [{"containerPort": 6006}]}]}},
    )["spec"]["ports"]
    assert [(p["name"], p["port"], p["targetPort"]) for p in ports] == [
        ("gcs", 7000, 7000),
        ("dashboard", 9000, 8265),
        ("client", 10001, 10001),
        ("metrics", 8080, 8080),
        ("port-6006", 6006, 6006),
        ("grpc", 9001, "grpc"),
    ]


def test_no_owner_reference_without_the_raycluster_uid():
    pod = build_ray_pod(provider(), "c", {"spec": {"containers": [{"name": "x"}]}}, tags("worker", "w"), {"CPU": 1})
    assert pod["metadata"]["ownerReferences"] == []


def test_user_fields_are_kept_and_ours_do_not_clobber_them():
    node_config = {
        "metadata": {
            "name": "fixed",
            "generateName": "legacy-",
            "labels": {"team": "a"},
            "annotations": {"x": "y"},
            "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "cm", "uid": "u"}],
        },
        "spec": {
            "restartPolicy": "OnFailure",
            "serviceAccountName": "ray",
            "volumes": [{"name": "dshm", "configMap": {"name": "x"}}],
            "containers": [
                {"name": "sidecar", "image": "busybox", "command": ["sleep", "1"]},
                {
                    "name": "ray-node",
                    "image": "rayproject/ray:2.60.0",
                    "command": ["sleep", "infinity"],
                    "env": [{"name": "MY_POD_IP", "value": "1.2.3.4"}, {"name": "A", "value": "b"}],
                    "volumeMounts": [{"name": "dshm", "mountPath": "/config"}],
                },
            ],
        },
    }
    before = copy.deepcopy(node_config)
    pod = build_ray_pod(
        provider(owner={"apiVersion": "cluster.ray.io/v1", "kind": "RayCluster", "name": "c", "uid": "u2"}),
        "c",
        node_config,
        tags("worker", "gpu"),
        {"CPU": 2},
    )
    assert node_config == before  # pure: the template is not modified
    assert pod["metadata"]["generateName"] == "c-gpu-"
    assert "name" not in pod["metadata"]
    assert pod["metadata"]["labels"]["team"] == "a"
    assert pod["metadata"]["annotations"] == {"x": "y", "ray.io/drain-timeout-seconds": "120"}
    assert [o["kind"] for o in pod["metadata"]["ownerReferences"]] == ["ConfigMap", "RayCluster"]
    assert pod["spec"]["restartPolicy"] == "OnFailure" and pod["spec"]["serviceAccountName"] == "ray"
    assert pod["spec"]["containers"][0] == node_config["spec"]["containers"][0]
    ray = pod["spec"]["containers"][1]
    assert [e["name"] for e in ray["env"]] == [
        "MY_POD_IP",
        "A",
        "RAY_HEAD_IP",
        "RAY_CLOUD_INSTANCE_ID",
        "RAY_NODE_TYPE_NAME",
    ]
    assert ray["env"][0] == {"name": "MY_POD_IP", "value": "1.2.3.4"}
    # "dshm" is taken by the user's config volume, so /dev/shm gets a volume of its own.
    assert {"name": "ray-dshm", "mountPath": "/dev/shm"} in ray["volumeMounts"]
    assert {"name": "ray-dshm", "emptyDir": {"medium": "Memory"}} in pod["spec"]["volumes"]
    assert (
        "automountServiceAccountToken" not in pod["spec"]
    )  # a ServiceAccount of its own: its token is the user's call


def test_the_templates_own_command_runs_before_ray_and_only_the_legacy_placeholder_goes():
    def script_of(**container):
        node_config = {"spec": {"containers": [{"name": "ray-node", **container}]}}
        script = build_ray_pod(provider(), "c", node_config, tags("worker", "w"), {"CPU": 1})["spec"]["containers"][0][
            "args"
        ][0]
        return "trap" + script.split("\ntrap", 1)[1]  # from the trap on: the drain's function comes before it

    mine = script_of(command=["/bin/sh", "-c"], args=["echo 'prepared' > /tmp/ready"])
    assert mine.splitlines()[1] == "{ /bin/sh -c 'echo '\"'\"'prepared'\"'\"' > /tmp/ready'"
    assert mine.index("/tmp/ready") < mine.index("ray start")
    for placeholder in (
        {"command": ["/bin/bash", "-c", "--"], "args": ["trap : TERM INT; sleep infinity & wait;"]},
        {"command": ["sleep", "infinity"]},
        {"args": ["tail -f /dev/null"]},
        {},
    ):
        assert script_of(**placeholder).splitlines()[1].startswith("{ ray start")  # the provider's start command first


def test_a_shm_volume_of_the_templates_own_size_is_kept_and_its_memory_token_as_asked():
    node_config = {
        "spec": {
            "automountServiceAccountToken": True,
            "volumes": [{"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "1Gi"}}],
            "containers": [
                {
                    "name": "ray-node",
                    "resources": {"requests": {"memory": "4Gi"}},
                    "volumeMounts": [{"name": "shm", "mountPath": "/dev/shm"}],
                }
            ],
        }
    }
    pod = build_ray_pod(provider(), "c", node_config, tags("worker", "w"), {"CPU": 1})
    assert (
        pod["spec"]["volumes"] == node_config["spec"]["volumes"] and pod["spec"]["automountServiceAccountToken"] is True
    )
    del node_config["spec"]["volumes"][0]["emptyDir"]["sizeLimit"]
    pod = build_ray_pod(provider(), "c", node_config, tags("worker", "w"), {"CPU": 1})
    assert pod["spec"]["volumes"][0]["emptyDir"] == {
        "medium": "Memory",
        "sizeLimit": "4Gi",
    }  # the request, no limit given


def test_setup_commands_run_first_and_custom_resources_are_quoted():
    script = ray_script(
        ["pip install x"],
        ["ray stop", "ulimit -n 65536; ray start --address=h:6379 && echo up"],
        head=False,
        resources={"CPU": 1, "accel": 2, "GPU": 1},
    )
    assert script == (
        "trap 'ray stop >/dev/null 2>&1; exit 143' TERM INT\n"
        "{ pip install x\n} || exit $?\n"
        "{ ray stop\n} || exit $?\n"
        "{ ulimit -n 65536; ray start --block --node-ip-address=$MY_POD_IP --num-cpus=1 --num-gpus=1"
        " --resources='{\"accel\":2}' --address=h:6379 && echo up\n} &\nray_pid=$!\nwait $ray_pid || exit $?\n"
    )


def test_head_flags_given_by_the_user_are_not_repeated():
    script = ray_script(
        [], ["ray start --head --no-monitor --block --node-ip-address=10.0.0.1"], head=True, resources={"CPU": 1}
    )
    assert script.count("--no-monitor") == 1 and script.count("--block") == 1
    assert "--node-ip-address=$MY_POD_IP" not in script


def fake_ray(tmp_path):
    """An environment in which `ray` is a recorder of its arguments, as seen by the container's bash."""
    fake = tmp_path / "ray"
    fake.write_text('#!/bin/bash\necho "ray $*" >> "$LOG"\n[ "$1" != start ] || exit "${RAY_START_STATUS:-0}"\n')
    fake.chmod(0o755)
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin", "LOG": str(tmp_path / "log"), "MY_POD_IP": "10.1.2.3"}
    return env


def test_the_script_runs_in_bash_and_stops_at_the_first_failure(tmp_path):
    env = fake_ray(tmp_path)
    script = ray_script(
        ["echo setup >> $LOG"],
        ["ray stop", "ulimit -n 65536; ray start --address=h:1"],
        head=False,
        resources={"CPU": 3, "memory": 1000, "a": 1},
    )
    result = subprocess.run(["/bin/bash", "-c", script], env=env, timeout=30)
    assert result.returncode == 0
    assert (tmp_path / "log").read_text().splitlines() == [
        "setup",
        "ray stop",
        'ray start --block --node-ip-address=10.1.2.3 --num-cpus=3 --memory=1000 --resources={"a":1} --address=h:1',
    ]
    (tmp_path / "log").unlink()
    failing = ray_script(["false # a comment"], ["ray start --address=h:1"], head=False, resources={"CPU": 1})
    result = subprocess.run(["/bin/bash", "-c", failing], env=env, timeout=30)
    assert result.returncode == 1
    assert not (tmp_path / "log").exists()
    result = subprocess.run(
        ["/bin/bash", "-c", ray_script([], ["ray start --address=h:1"], False, {"CPU": 1})],
        env={**env, "RAY_START_STATUS": "7"},
        timeout=30,
    )
    assert result.returncode == 7


def test_sigterm_stops_ray_and_ends_the_script_at_once(tmp_path):
    env = fake_ray(tmp_path)
    (tmp_path / "ray").write_text(
        '#!/bin/bash\necho "ray $*" >> "$LOG"\n'
        '[ "$1" != start ] || { echo $$ > "$LOG.pid"; exec sleep 60; }\n'
        '[ "$1" != stop ] || kill "$(cat "$LOG.pid")"\n'
    )
    script = ray_script([], ["ray start --address=h:1"], head=False, resources={"CPU": 1})
    process = subprocess.Popen(["/bin/bash", "-c", script], env=env)
    wait_for(lambda: (tmp_path / "log").exists(), timeout=10, message="ray started")
    process.terminate()
    assert process.wait(timeout=10) == 143
    assert (tmp_path / "log").read_text().splitlines()[-1] == "ray stop"
    pid = int((tmp_path / "log.pid").read_text())
    wait_for(lambda: not os.path.exists(f"/proc/{pid}"), timeout=10, message="Ray stopped")


def test_pod_name_prefix_fits_a_hostname():
    assert pod_name_prefix("example-cluster", "rayWorkerType") == "example-cluster-rayworkertype-"
    assert pod_name_prefix("c", "GPU_workers.v2") == "c-gpu-workers-v2-"
    long = pod_name_prefix("a" * 52, "b" * 63)
    assert len(long) + 5 <= 63 and long.endswith("-") and "--" not in long


def test_a_deleted_worker_drains_its_node_then_stops_ray(tmp_path):
    """SIGTERM: the drain (autoscaler_bridge.drain_on_term, run by the image's python with Ray's PID and the drain
    time) comes first, then `ray stop`; a drain past its deadline is the container's exit code."""
    env = fake_ray(tmp_path)
    (tmp_path / "ray").write_text(
        '#!/bin/bash\necho "ray $*" >> "$LOG"\n'
        '[ "$1" != start ] || { echo $$ > "$LOG.pid"; exec sleep 60; }\n'
        '[ "$1" != stop ] || kill "$(cat "$LOG.pid")"\n'
    )
    (tmp_path / "python3").write_text(
        '#!/bin/bash\necho "drain $2 $3 $(grep -c . -)" >> "$LOG"\nexit "$DRAIN_STATUS"\n'
    )
    (tmp_path / "python3").chmod(0o755)
    script = ray_script([], ["ray start --address=h:1"], head=False, resources={"CPU": 1}, drain_seconds=45)
    for status, code in (("0", 143), ("124", 124), ("1", 143)):
        (tmp_path / "log").unlink(missing_ok=True)
        process = subprocess.Popen(["/bin/bash", "-c", script], env={**env, "DRAIN_STATUS": status})
        wait_for(
            lambda: (tmp_path / "log.pid").exists() and (tmp_path / "log").exists(), timeout=10, message="ray started"
        )
        ray_pid = int((tmp_path / "log.pid").read_text())
        process.terminate()
        assert process.wait(timeout=10) == code
        drained, stopped = (tmp_path / "log").read_text().splitlines()[-2:]
        assert drained.startswith("drain ") and drained.split()[2] == "45" and int(drained.split()[3]) > 50
        assert stopped == "ray stop"
        wait_for(lambda pid=ray_pid: not os.path.exists(f"/proc/{pid}"), timeout=10, message="Ray stopped")
        (tmp_path / "log.pid").unlink()


@pytest.mark.parametrize(
    "drain, grace, expected",
    [
        (120, None, (120, 135)),  # no grace in the template: the drain and the margin to stop Ray
        (0, None, (0, None)),  # no drain: Kubernetes' default grace
        (120, 60, (45, 60)),  # the template's grace bounds the drain
        (30, 600, (30, 600)),
        (30, 5, (0, 5)),
    ],
)
def test_the_drain_fits_the_pods_grace_period(drain, grace, expected):
    assert drain_timing(drain, grace) == expected


def test_a_worker_pod_gets_its_podtypes_drain_time_and_a_grace_period_to_match():
    node_config = {"spec": {"containers": [{"name": "ray-node"}]}}
    worker = build_ray_pod(provider(drain_seconds={"w": 50}), "c", node_config, tags("worker", "w"), {"CPU": 1})
    assert worker["spec"]["terminationGracePeriodSeconds"] == 65
    assert worker["metadata"]["annotations"] == {"ray.io/drain-timeout-seconds": "50"}  # what its Events say
    script = worker["spec"]["containers"][0]["args"][0]
    assert '"$python" - "$ray_pid" 50 <<' in script
    drain_source = script.split("<<'RAY_OPERATOR_DRAIN_END'\n", 1)[1].split("\nRAY_OPERATOR_DRAIN_END\n", 1)[0]
    compile(drain_source, "drain", "exec")  # what the image's python runs
    assert "$(" not in drain_source  # Kubernetes would expand $(NAME) in a container's args
    # `ray stop` (which legacy start commands run first) kills every process whose command line names one of these:
    # the container's shell, whose command line is this script, must not be one of them.
    assert not [keyword for keyword, by_name in RAY_PROCESSES if not by_name and keyword in script]
    head = build_ray_pod(provider(drain_seconds={"h": 50}), "c", node_config, tags("head", "h"), {"CPU": 1})
    assert "terminationGracePeriodSeconds" not in head["spec"]
    assert head["spec"]["containers"][0]["args"][0].startswith(STOP_RAY_ON_TERM)
