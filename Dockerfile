# The operator's image: ray-operator alone (not the sandbox's local Kubernetes, the `sandbox` extra) and the one Ray
# version its autoscaler runs (keep RAY_VERSION within setup.cfg's ray range and
# ray_operator.monitor_process.SUPPORTED_RAY; a test checks both).
FROM python:3.11-slim
ARG RAY_VERSION=2.60.0
WORKDIR /src
COPY pyproject.toml setup.cfg setup.py README.md ./
COPY operator ./operator
# ray_operator/chart and ray_operator/examples link to these: the wheel ships the chart's defaults and CRD.
COPY charts ./charts
COPY values ./values
COPY autoscaler_bridge ./autoscaler_bridge
RUN pip install --no-cache-dir "ray[default]==${RAY_VERSION}" . && cd / && rm -rf /src
WORKDIR /
# Non-root, as the chart runs it (read-only root filesystem; /tmp is an emptyDir).
USER 1000:1000
ENTRYPOINT ["ray-operator"]
CMD ["run"]
