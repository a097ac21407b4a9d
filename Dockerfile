# otcli: the `otdist` command in a container.
#
#   docker build -t otcli .
#   docker run --rm -v "$PWD:/data" otcli sample_data/moons_a.csv sample_data/moons_b.csv
#
# Paths are relative to /data, the working directory, where the command above mounts the
# current directory. The container runs as an unprivileged user (uid 10001); to write outputs
# (--coupling, --plot, ...) into a mounted directory owned by someone else, run it as yourself:
#   docker run --rm --user "$(id -u):$(id -g)" -v "$PWD:/data" otcli a.csv b.csv --coupling p.npy
#
# CPU by default: torch comes from PyTorch's CPU wheel index (about 200 MB instead of several GB).
#
# CUDA variant: the base image is a build argument, so CUDA is one build-arg away. Pick a PyTorch
# CUDA runtime image whose torch is the TORCH_VERSION below; the torch install step then finds
# torch already there and installs nothing, and the CUDA libraries come with the base image:
#   docker build -t otcli:cuda \
#     --build-arg BASE=pytorch/pytorch:2.13.0-cuda12.8-cudnn9-runtime .
#   docker run --rm --gpus all -v "$PWD:/data" otcli:cuda a.csv b.csv --device cuda
# (--gpus needs the NVIDIA Container Toolkit on the host.) Alternatively keep the slim Python
# base and take torch's CUDA wheels, which bring their own CUDA libraries:
#   docker build -t otcli:cuda --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128 .
ARG BASE=python:3.11-slim
FROM ${BASE}

ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# torch first, from its own index, so installing the project finds its torch requirement met
# and never pulls the default (CUDA) build from PyPI.
RUN pip install --no-cache-dir "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX}"

COPY pyproject.toml README.md /tmp/otcli/
COPY src /tmp/otcli/src
RUN pip install --no-cache-dir /tmp/otcli \
    && rm -rf /tmp/otcli \
    && groupadd --gid 10001 otcli \
    && useradd --create-home --gid 10001 --uid 10001 --shell /usr/sbin/nologin otcli \
    && mkdir -p /data \
    && chown otcli:otcli /data

# By number, so that `docker run` and Kubernetes can tell it is not root.
USER 10001:10001
WORKDIR /data
ENTRYPOINT ["otdist"]
CMD ["--help"]
