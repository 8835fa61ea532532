# The poolgate image: one image, every part is a subcommand (`poolgate hooks`, `poolgate picker`, ...).
#   docker build -t ghcr.io/poolgate/poolgate:0.1.0 .
#   docker run --rm ghcr.io/poolgate/poolgate:0.1.0 hooks --help
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/poolgate
WORKDIR /src
COPY pyproject.toml README.md ./
COPY poolgate ./poolgate
COPY picker ./picker
COPY hooks ./hooks
COPY simulator ./simulator
RUN /opt/poolgate/bin/pip install .

FROM python:3.11-slim
ENV PATH=/opt/poolgate/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
COPY --from=build /opt/poolgate /opt/poolgate
USER 65532:65532
ENTRYPOINT ["poolgate"]
CMD ["--help"]
