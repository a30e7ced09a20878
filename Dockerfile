# The tracejury image: one console script, `tracejury`, for every service in
# docker-compose.yml (db upgrade, worker, mock-judge, ingest, batch ...).
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY tracejury ./tracejury
COPY judges ./judges
COPY workers ./workers
# rubrics and judge profiles: TRACEJURY_RUBRICS_DIR defaults to ./rubrics; copied before the
# install, as the package ships them too (tracejury/core/defaults/rubrics links here, and
# `tracejury init` copies them from the installed package)
COPY rubrics ./rubrics
# PostgreSQL driver from the `postgres` extra. The import check fails the build, not a
# container at run time, if a module the services use is not installed with the package.
RUN pip install '.[postgres]' \
 && python -c "import celery, kombu, redis, jinja2, aiohttp, httpx_aiohttp, psycopg" \
 && python -c "from tracejury.defaults import shipped_defaults; assert (shipped_defaults() / 'rubrics' / 'profiles.yaml').is_file()"

# not root: Celery warns against it, and nothing here needs it
RUN useradd --create-home --uid 10001 tracejury
USER tracejury
ENTRYPOINT ["tracejury"]
CMD ["--help"]
