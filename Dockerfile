# The image the worker, the edge, the API, `slot temporal setup` and `slot db upgrade` run from
# (see docker-compose.yml). The build context is what .dockerignore lets through: no local
# environment, data or recordings.
FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends espeak-ng \
    && rm -rf /var/lib/apt/lists/*
RUN pip install --no-cache-dir uv==0.13.9
WORKDIR /app
ENV PATH="/app/.venv/bin:$PATH" UV_LINK_MODE=copy
COPY pyproject.toml uv.lock ./
RUN uv sync --frozen --no-dev --no-install-project
COPY . .
RUN uv sync --frozen --no-dev
RUN python -m slot.llm.generate --force
RUN useradd --system --create-home slot && mkdir -p .slot-data && chown slot .slot-data
USER slot
