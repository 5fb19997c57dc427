# Liaison as a container: `docker build -t liaison .` then see compose.yaml and README's
# "Run in production". The image runs `liaison serve` as a non-root user on port 3000.
FROM python:3.12-slim AS build
WORKDIR /src
COPY pyproject.toml README.md app.py ./
COPY bot ./bot
COPY handlers ./handlers
COPY digests ./digests
COPY storage ./storage
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.12-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MPLCONFIGDIR=/tmp/matplotlib \
    LIAISON_LOG_FORMAT=json
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels \
    && useradd --system --create-home --uid 10001 liaison
USER liaison
WORKDIR /home/liaison
EXPOSE 3000
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:3000/healthz', timeout=4)"]
ENTRYPOINT ["liaison"]
CMD ["serve", "--host", "0.0.0.0", "--port", "3000"]
