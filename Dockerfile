FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY tracejury ./tracejury
COPY judges ./judges
COPY workers ./workers
COPY rubrics ./rubrics
RUN pip install --no-cache-dir '.[postgres]'
ENTRYPOINT ["tracejury"]
