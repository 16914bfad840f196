# syntax=docker/dockerfile:1
# BrainScan: one image for the web server, the workers and beat (docker-compose.yml picks the command).
# It serves the release model in models/ with ONNX Runtime; TensorFlow (training only) is not installed.

FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /build
COPY requirements.txt constraints.txt ./
# Top-level pins from requirements.txt, every transitive version from constraints.txt (the tested set).
RUN grep -v '# training' requirements.txt > requirements-serve.txt \
 && python -m venv /venv \
 && /venv/bin/pip install --no-cache-dir --require-virtualenv -r requirements-serve.txt -c constraints.txt

FROM python:3.11-slim-bookworm
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/venv/bin:$PATH \
    DJANGO_SETTINGS_MODULE=brainscan.settings
RUN groupadd --system --gid 10001 brainscan \
 && useradd --system --uid 10001 --gid brainscan --home-dir /app --no-create-home --shell /usr/sbin/nologin brainscan
COPY --from=build /venv /venv
WORKDIR /app
# The code and the model belong to root and are read-only for the application user.
COPY manage.py ./
COPY brainscan brainscan
COPY diagnosis diagnosis
COPY analytics analytics
COPY integrations integrations
COPY ml ml
COPY templates templates
COPY static static
COPY models models
COPY deploy deploy
# Static files are collected with the production storage (hashed names, compressed copies), so every
# replica of this image serves the same files. The throwaway keys exist only for this command.
RUN BRAINSCAN_PRODUCTION=1 DJANGO_ALLOWED_HOSTS=build.invalid \
    DJANGO_SECRET_KEY="collectstatic-only-$(python -c 'import secrets; print(secrets.token_urlsafe(48))')" \
    BRAINSCAN_AUDIT_KEYS="build:$(python -c 'import secrets; print(secrets.token_urlsafe(32))')" \
    python manage.py collectstatic --noinput --verbosity 0 \
 && python -m compileall -q brainscan diagnosis analytics integrations ml \
 && mkdir var \
 && chown -R brainscan:brainscan staticfiles var
USER brainscan
EXPOSE 8000
CMD ["deploy/start-web"]
