"""Gunicorn in the web container. Worker processes: WEB_CONCURRENCY (gunicorn reads it itself; default 1,
the compose file sets 2). Threads let a process wait on the database or storage for one request while
serving another; nginx in front buffers slow uploads, so a slow client never holds a thread."""

bind = "0.0.0.0:8000"
worker_class = "gthread"
threads = 4
timeout = 60
graceful_timeout = 30
keepalive = 5
# Recycle processes now and then, so a slow leak cannot grow for weeks.
max_requests = 2000
max_requests_jitter = 200
accesslog = "-"
# Worker heartbeat files in memory, not on the container's overlay filesystem.
worker_tmp_dir = "/dev/shm"
