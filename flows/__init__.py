"""Prefect flows of trans-encoder (self-distillation, evaluation, scoring) and the CLI."""

import os

# Offline by default: Prefect's telemetry would only fail (and log errors) without internet.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# The ephemeral (serverless) mode starts a local API; on a busy 2-core machine 20 s is not always enough.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
