"""Every problem of a RayCluster is reported, with its path and offending value."""

import copy


from autoscaler_bridge.validation import Problem, validate_raycluster


def messages(raycluster) -> list[str]:
    return [str(p) for p in validate_raycluster(raycluster)]


def test_examples_are_valid(example_raycluster):
    assert validate_raycluster(example_raycluster) == []


def pod_type(name, cpu="1", **fields):
    return {
        "name": name,
        "podConfig": {"spec": {"containers": [{"name": "ray-node", "resources": {"limits": {"cpu": cpu}}}]}},
        **fields,
    }


def cluster(**spec):
    base = {"headPodType": "head", "podTypes": [pod_type("head"), pod_type("worker", minWorkers=1, maxWorkers=2)]}
    base.update(spec)
    return {"apiVersion": "cluster.ray.io/v1", "kind": "RayCluster", "metadata": {"name": "c1"}, "spec": base}


def test_minimal_cluster_is_valid():
    assert messages(cluster()) == []


def test_missing_head_pod_type():
    rc = cluster()
    del rc["spec"]["headPodType"]
    assert messages(rc) == ["spec.headPodType: is required"]


def test_unknown_head_pod_type():
    assert messages(cluster(headPodType="gpu")) == ["spec.headPodType: 'gpu' is not one of the podTypes (head, worker)"]


def test_negative_and_inverted_min_max():
    rc = cluster(podTypes=[pod_type("head", minWorkers=-1), pod_type("worker", minWorkers=2, maxWorkers=1)])
    assert messages(rc) == [
        "spec.podTypes[0].minWorkers: -1 is negative",
        "spec.podTypes[1].maxWorkers: 1 is less than minWorkers 2",
    ]


def test_non_numeric_min_max_and_spec_numbers():
    rc = cluster(
        maxWorkers="3",
        upscalingSpeed=-1,
        idleTimeoutMinutes="five",
        podTypes=[pod_type("head", maxWorkers=1.5), pod_type("worker", minWorkers=True)],
    )
    assert messages(rc) == [
        "spec.maxWorkers: '3' is not a whole number",
        "spec.upscalingSpeed: -1 is negative",
        "spec.idleTimeoutMinutes: 'five' is not a number",
        "spec.podTypes[0].maxWorkers: 1.5 is not a whole number",
        "spec.podTypes[1].minWorkers: True is not a whole number",
    ]


def test_the_head_disruption_budget_is_true_or_false():
    assert messages(cluster(headPodDisruptionBudget=False)) == []
    assert messages(cluster(headPodDisruptionBudget="no")) == [
        "spec.headPodDisruptionBudget: 'no' is not true or false"
    ]


def test_global_max_workers_below_the_sum_of_min_workers():
    rc = cluster(
        maxWorkers=1,
        podTypes=[
            pod_type("head"),
            pod_type("a", minWorkers=1, maxWorkers=1),
            pod_type("b", minWorkers=1, maxWorkers=1),
        ],
    )
    assert messages(rc) == ["spec.maxWorkers: 1 is less than the podTypes' minWorkers together (2)"]


def test_non_numeric_ray_resources():
    rc = cluster(podTypes=[pod_type("head", rayResources={"accel": "abc", "ok": 1, "neg": -2, "half": 0.5})])
    assert messages(rc) == [
        "spec.podTypes[0].rayResources.accel: 'abc' is not a whole number",
        "spec.podTypes[0].rayResources.neg: -2 is negative",
        "spec.podTypes[0].rayResources.half: 0.5 is not a whole number",
    ]
    rc = cluster(podTypes=[pod_type("head", rayResources=["GPU"])])
    assert messages(rc) == ["spec.podTypes[0].rayResources: ['GPU'] is not an object"]


def test_unparsable_quantity():
    rc = cluster()
    rc["spec"]["podTypes"][1]["podConfig"]["spec"]["containers"][0]["resources"] = {
        "limits": {"cpu": "2", "memory": "4GB"},
        "requests": {"nvidia.com/gpu": "one"},
    }
    assert messages(rc) == [
        "spec.podTypes[1].podConfig.spec.containers[0].resources.limits.memory:"
        " '4GB' is not a Kubernetes quantity (e.g. 500m, 1.5, 2Gi)",
        "spec.podTypes[1].podConfig.spec.containers[0].resources.requests.nvidia.com/gpu:"
        " 'one' is not a Kubernetes quantity (e.g. 500m, 1.5, 2Gi)",
    ]


def test_pod_type_without_a_container():
    rc = cluster(podTypes=[pod_type("head"), {"name": "w", "podConfig": {"spec": {"containers": []}}}])
    assert messages(rc) == ["spec.podTypes[1].podConfig.spec.containers: needs at least one container to run Ray in"]
    rc = cluster(podTypes=[pod_type("head"), {"name": "w", "podConfig": {"spec": {}}}, {"name": "x"}])
    assert messages(rc) == [
        "spec.podTypes[1].podConfig.spec.containers: needs at least one container to run Ray in",
        "spec.podTypes[2].podConfig: is required",
    ]


def test_pod_type_without_any_cpu():
    rc = cluster(podTypes=[{"name": "head", "podConfig": {"spec": {"containers": [{"name": "ray-node"}]}}}])
    assert messages(rc) == [
        "spec.podTypes[0].podConfig.spec.containers[0].resources: no CPU given: set limits.cpu"
        " (or requests.cpu) of the Ray container, or rayResources.CPU, so the autoscaler knows what a pod offers"
    ]
    rc["spec"]["podTypes"][0]["rayResources"] = {"CPU": 2}
    assert messages(rc) == []


def test_cpu_of_a_sidecar_does_not_count_for_the_ray_container():
    rc = cluster(
        podTypes=[
            {
                "name": "head",
                "podConfig": {
                    "spec": {
                        "containers": [{"name": "ray-node"}, {"name": "sidecar", "resources": {"limits": {"cpu": 1}}}]
                    }
                },
            }
        ]
    )
    assert [p.path for p in validate_raycluster(rc)] == ["spec.podTypes[0].podConfig.spec.containers[0].resources"]


def test_duplicate_and_malformed_pod_type_names():
    rc = cluster(podTypes=[pod_type("head"), pod_type("head"), pod_type("-bad-"), pod_type(7)])
    assert messages(rc) == [
        "spec.podTypes[1].name: 'head' is the name of podTypes[0] already",
        "spec.podTypes[2].name: '-bad-' must be at most 63 letters, digits, '-', '_' or '.',"
        " starting and ending with a letter or digit",
        "spec.podTypes[3].name: 7 must be at most 63 letters, digits, '-', '_' or '.',"
        " starting and ending with a letter or digit",
    ]


def test_cluster_name_must_fit_the_head_service_name():
    rc = cluster()
    rc["metadata"]["name"] = "a" * 52
    assert messages(rc) == []
    rc["metadata"]["name"] = "a" * 53
    assert messages(rc) == [
        f"metadata.name: '{'a' * 53}' is longer than 52 characters"
        " (names derived from it, such as the label value 'ray-<name>-worker', must fit in 63)"
    ]
    rc["metadata"]["name"] = "1cluster"
    assert [p.path for p in validate_raycluster(rc)] == ["metadata.name"]
    del rc["metadata"]["name"]
    assert messages(rc) == ["metadata.name: is required"]


def test_wrong_kind_and_api_version():
    rc = cluster()
    rc["kind"], rc["apiVersion"] = "RayJob", "ray.io/v1"
    assert messages(rc) == ["apiVersion: 'ray.io/v1' is not cluster.ray.io/v1", "kind: 'RayJob' is not RayCluster"]


def test_start_commands():
    rc = cluster(
        headStartRayCommands=["ray stop", "ray start --port=6379 --num-cpus=4"],
        workerStartRayCommands=["echo hello"],
    )
    assert messages(rc) == [
        "spec.headStartRayCommands[1]: --num-cpus is set by the operator from the podType's resources"
        " and rayResources; remove it from the command",
        "spec.headStartRayCommands[1]: the head's `ray start` needs --head",
        "spec.workerStartRayCommands: no command runs `ray start`: the pod would never join the cluster",
    ]
    rc = cluster(headStartRayCommands=["ray start --head --port abc"], workerStartRayCommands="ray start")
    assert messages(rc) == [
        "spec.headStartRayCommands[0]: --port 'abc' is not a port number",
        "spec.workerStartRayCommands: 'ray start' is not a list of shell commands",
    ]


def test_head_service_ports():
    rc = cluster(
        headServicePorts=[{"name": "serve", "port": 8000}, {"name": "serve", "port": 0, "targetPort": 1.5}, "x"]
    )
    assert messages(rc) == [
        "spec.headServicePorts[1].name: 'serve' appears twice",
        "spec.headServicePorts[1].port: 0 is not a port number (1-65535)",
        "spec.headServicePorts[1].targetPort: 1.5 is neither a port number nor a name",
        "spec.headServicePorts[2]: 'x' is not an object",
    ]


def test_setup_commands_alias_and_types():
    rc = cluster(
        podTypes=[
            pod_type("head", setupCommands=["pip install x"], workerSetupCommands=["y"]),
            pod_type("w", setupCommands=[1]),
        ]
    )
    assert messages(rc) == [
        "spec.podTypes[0]: give setupCommands or workerSetupCommands (its alias), not both",
        "spec.podTypes[1].setupCommands[0]: 1 is not a string",
    ]


def test_not_an_object_anywhere():
    assert messages([]) == ["RayCluster: list is not an object"]
    assert messages({"metadata": {"name": "x"}}) == ["spec: is required"]
    assert messages({"metadata": {"name": "x"}, "spec": {"podTypes": [], "headPodType": "h"}}) == [
        "spec.podTypes: is empty: at least the head's podType is needed",
        "spec.headPodType: 'h' is not one of the podTypes (none)",
    ]


def test_all_problems_are_reported_at_once():
    rc = cluster(maxWorkers=-1, headPodType="nope")
    rc["spec"]["podTypes"][1]["maxWorkers"] = 0
    rc["spec"]["podTypes"][0]["rayResources"] = {"x": "y"}
    assert len(validate_raycluster(rc)) == 4


def test_problem_renders_path_then_message():
    assert str(Problem("spec.podTypes[1].maxWorkers", "1 is less than minWorkers 2")) == (
        "spec.podTypes[1].maxWorkers: 1 is less than minWorkers 2"
    )


def test_validation_does_not_modify_its_input(example_raycluster):
    before = copy.deepcopy(example_raycluster)
    validate_raycluster(example_raycluster)
    assert example_raycluster == before


def ray_container(rc, index=1):
    return rc["spec"]["podTypes"][index]["podConfig"]["spec"]["containers"][0]


def test_hostile_numbers_are_listed_problems():
    rc = cluster(upscalingSpeed=float("inf"), idleTimeoutMinutes=float("nan"), maxWorkers=2**31)
    ray_container(rc)["resources"]["limits"]["cpu"] = "1e1000000"
    ray_container(rc)["resources"]["requests"] = {"memory": 10**30, "nvidia.com/gpu": "-1"}
    rc["spec"]["podTypes"][1]["rayResources"] = {"accel": 2**64}
    assert sorted(messages(rc)) == sorted(
        [
            "spec.upscalingSpeed: inf is not a finite number",
            "spec.idleTimeoutMinutes: nan is not a finite number",
            "spec.maxWorkers: 2147483648 is more than Kubernetes allows for a count (2147483647)",
            "spec.podTypes[1].podConfig.spec.containers[0].resources.limits.cpu: '1e1000000' is more than Kubernetes "
            "allows for a quantity (9223372036854775807)",
            "spec.podTypes[1].podConfig.spec.containers[0].resources.requests.memory: 1000000000000000000000000000000 "
            "is more than Kubernetes can hold (int64)",
            "spec.podTypes[1].podConfig.spec.containers[0].resources.requests.nvidia.com/gpu: '-1' is negative",
            "spec.podTypes[1].rayResources.accel: 18446744073709551616 is more than Kubernetes can hold (int64)",
        ]
    )


def test_every_containers_quantities_are_checked():
    rc = cluster()
    spec = rc["spec"]["podTypes"][0]["podConfig"]["spec"]
    spec["containers"].append({"name": "sidecar", "resources": {"limits": {"ephemeral-storage": "1e99"}}})
    spec["initContainers"] = [{"name": "init", "resources": {"requests": {"cpu": "lots"}}}]
    assert messages(rc) == [
        "spec.podTypes[0].podConfig.spec.initContainers[0].resources.requests.cpu: 'lots' is not a Kubernetes "
        "quantity (e.g. 500m, 1.5, 2Gi)",
        "spec.podTypes[0].podConfig.spec.containers[1].resources.limits.ephemeral-storage: '1e99' is more than "
        "Kubernetes allows for a quantity (9223372036854775807)",
    ]


def test_wrong_shapes_of_what_the_operator_reads_are_problems():
    rc = cluster()
    container = ray_container(rc)
    container.update(env="FOO=bar", ports=[{"containerPort": 70000}], volumeMounts=["dshm"], command="ray start")
    rc["spec"]["podTypes"][1]["podConfig"]["metadata"] = {"labels": {"a": 1}, "ownerReferences": {}}
    rc["spec"]["podTypes"][1]["podConfig"]["spec"]["volumes"] = [{"emptyDir": {}}]
    assert sorted(messages(rc)) == sorted(
        [
            "spec.podTypes[1].podConfig.metadata.labels: 'a': 1 is not a string to a string",
            "spec.podTypes[1].podConfig.metadata.ownerReferences: {} is not a list",
            "spec.podTypes[1].podConfig.spec.volumes[0].name: is required",
            "spec.podTypes[1].podConfig.spec.containers[0].env: 'FOO=bar' is not a list",
            "spec.podTypes[1].podConfig.spec.containers[0].ports[0].containerPort: 70000 is not a port number "
            "(1-65535)",
            "spec.podTypes[1].podConfig.spec.containers[0].volumeMounts[0]: 'dshm' is not an object",
            "spec.podTypes[1].podConfig.spec.containers[0].command: 'ray start' is not a list of shell commands",
        ]
    )


def test_what_json_cannot_hold_is_a_problem_at_any_depth():
    import datetime

    rc = cluster()
    deep: list = []
    for _ in range(100_000):  # deeper than Python's recursion limit: the walk does not recurse
        deep = [deep]
    rc["spec"]["podTypes"][0]["podConfig"]["spec"]["deep"] = [deep, float("nan")]
    rc["spec"]["podTypes"][0]["podConfig"]["spec"]["nodeSelector"] = {1: "a"}
    rc["spec"]["podTypes"][0]["podConfig"]["metadata"] = {"annotations": {"when": datetime.date(2024, 1, 1)}}
    found = messages(rc)
    [deep] = [m for m in found if m.startswith("spec.podTypes[0].podConfig.spec.deep[0][0]")]
    assert deep.endswith(": nests deeper than 64 levels")  # refused before anything that recurses sees it
    assert sorted(m for m in found if m != deep) == sorted(
        [
            "spec.podTypes[0].podConfig.spec.deep[1]: nan is not a finite number",
            "spec.podTypes[0].podConfig.spec.nodeSelector: the key 1 is not a string",
            "spec.podTypes[0].podConfig.metadata.annotations.when: datetime.date(2024, 1, 1) (date) is not JSON: "
            "quote it",
            "spec.podTypes[0].podConfig.metadata.annotations: 'when': datetime.date(2024, 1, 1) is not a string to a "
            "string",
        ]
    )


def test_many_problems_are_counted_past_twenty():
    rc = cluster(podTypes=[pod_type("head"), *(pod_type(f"w{i}", minWorkers=-1) for i in range(10_000))])
    found = messages(rc)
    assert len(found) == 21 and found[-1] == "RayCluster: and 9980 more problems"


def test_a_head_that_reads_its_token_from_a_file_is_a_problem():
    rc = cluster()
    ray_container(rc, 0)["env"] = [{"name": "RAY_AUTH_TOKEN_PATH", "value": "/etc/ray/token"}]
    assert messages(rc) == [
        "spec.podTypes[0].podConfig: RAY_AUTH_TOKEN_PATH: the autoscaler cannot read a token from a file in the head's "
        "pod; give RAY_AUTH_TOKEN from a Secret (valueFrom.secretKeyRef) or leave the token to the operator's Secret"
    ]
    assert messages(cluster(rayAuthentication="disabled", podTypes=rc["spec"]["podTypes"])) == []


def test_a_container_name_kubernetes_would_refuse_is_a_problem():
    rc = cluster()
    ray_container(rc)["name"] = "Not_A_DNS_Label"
    assert messages(rc) == [
        "spec.podTypes[1].podConfig.spec.containers[0].name: 'Not_A_DNS_Label' must be at most 63 lower-case letters, "
        "digits and '-', starting and ending with a letter or digit (Kubernetes refuses the pod otherwise)"
    ]


def test_a_raycluster_larger_than_kubernetes_stores_is_refused_first():
    rc = cluster()
    rc["spec"]["podTypes"][0]["podConfig"]["metadata"] = {"annotations": {f"a{i}": "x" * 1000 for i in range(4000)}}
    assert messages(rc) == ["RayCluster: is larger than Kubernetes stores (3 MiB)"]


def test_drain_time_and_grace_period_are_whole_seconds():
    worker = pod_type("worker", drainTimeoutSeconds=-5)
    worker["podConfig"]["spec"]["terminationGracePeriodSeconds"] = "30s"
    assert messages(cluster(podTypes=[pod_type("head", drainTimeoutSeconds=1.5), worker])) == [
        "spec.podTypes[0].drainTimeoutSeconds: 1.5 is not a whole number",
        "spec.podTypes[1].drainTimeoutSeconds: -5 is negative",
        "spec.podTypes[1].podConfig.spec.terminationGracePeriodSeconds: '30s' is not a whole number",
    ]
    assert messages(cluster(podTypes=[pod_type("head"), pod_type("worker", drainTimeoutSeconds=0)])) == []
