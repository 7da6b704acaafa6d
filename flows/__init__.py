"""Prefect flows of trans-encoder (self-distillation, evaluation, scoring) and the CLI."""

import os

# Offline by default: Prefect's telemetry would only fail (and log errors) without internet.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
