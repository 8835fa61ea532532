# The poolgate image: one image, every part is a subcommand (`poolgate hooks`, `poolgate picker`, `poolgate sim`, ...).
#   docker build -t ghcr.io/poolgate/poolgate:0.1.0 .          (or images/build.sh, with buildah)
#   docker run --rm ghcr.io/poolgate/poolgate:0.1.0 hooks --help
# BASE must be a Debian bookworm image with python3 (3.11) and python3-venv; images/build.sh can make one from
# Debian packages (debootstrap) where no registry is reachable.
ARG BASE=python:3.11-slim-bookworm

FROM ${BASE} AS build
# A CA bundle for pip, for networks that reach PyPI through a TLS-intercepting proxy (a path the build mounts).
ARG PIP_INDEX_CA=""
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python3 -m venv /opt/poolgate
WORKDIR /src
COPY pyproject.toml README.md ./
COPY poolgate ./poolgate
COPY picker ./picker
COPY hooks ./hooks
COPY simulator ./simulator
RUN ${PIP_INDEX_CA:+env PIP_CERT="$PIP_INDEX_CA"} /opt/poolgate/bin/pip install . && /opt/poolgate/bin/poolgate --version

FROM ${BASE}
ENV PATH=/opt/poolgate/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
COPY --from=build /opt/poolgate /opt/poolgate
USER 65532:65532
ENTRYPOINT ["poolgate"]
CMD ["--help"]
