# syntax=docker/dockerfile:1
# One image for every ownkey role; the command picks it (see docker-compose.yml):
#   api --host 0.0.0.0 | worker | beat | flower --address 0.0.0.0 | db upgrade

# --- build: install ownkey and its dependencies into a virtualenv ---------------------
FROM python:3.11-slim AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/ownkey

WORKDIR /src
# Only what the package needs: never .env, .ownkey (master key, database) or .venv.
COPY pyproject.toml README.md ./
COPY api ./api
COPY worker ./worker
COPY scheduler ./scheduler
COPY shared ./shared
RUN /opt/ownkey/bin/pip install --no-cache-dir ".[postgres]" \
    && find /opt/ownkey -name '__pycache__' -type d -prune -exec rm -rf {} +

# --- runtime: the virtualenv and a non-root user, nothing else -------------------------
FROM python:3.11-slim

ENV PATH=/opt/ownkey/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    OWNKEY_DATA_DIR=/var/lib/ownkey \
    OWNKEY_API_HOST=0.0.0.0

RUN groupadd --system --gid 10001 ownkey \
    && useradd --system --uid 10001 --gid ownkey --home-dir /var/lib/ownkey \
       --create-home --shell /usr/sbin/nologin ownkey

COPY --from=build /opt/ownkey /opt/ownkey

USER ownkey
WORKDIR /var/lib/ownkey
EXPOSE 8000 5555

# For the api role (the default command). docker-compose.yml disables it for the
# worker, beat and migrate containers and gives Flower its own.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('OWNKEY_API_PORT', '8000'), timeout=4)"]

ENTRYPOINT ["ownkey"]
CMD ["api", "--host", "0.0.0.0"]
