"""ownkey's settings: one pydantic-settings object, read from OWNKEY_* environment variables.

`get_settings()` is cached so every module sees the same object; tests and the CLI call
`get_settings.cache_clear()` after changing the environment.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings", "get_settings"]

PLACEHOLDER_SECRETS = {"changeme", "change-me", "secret", "please-change-me"}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OWNKEY_", env_file=".env", extra="ignore")

    environment: Literal["development", "production", "test"] = "development"
    data_dir: Path = Path(".ownkey")
    # Empty means SQLite in data_dir (the embedded default).
    database_url: str = ""
    # PostgreSQL: the most connections one ownkey process (API, worker, beat) keeps open.
    # Kept open, never opened per burst. processes x this must stay below the server's
    # max_connections (100 by default); threads beyond it wait their turn in the process.
    database_pool_size: int = Field(default=20, ge=1, le=500)
    # Empty means "start a private Redis" (ownkey up) or fail clearly (api/worker alone).
    redis_url: str = ""
    # Master key for provider secrets. Empty: generated once into data_dir/secret.key (0600).
    secret_key: SecretStr = SecretStr("")

    api_host: str = "127.0.0.1"
    api_port: int = 8000
    max_body_bytes: int = 1_048_576
    # A batch's dataset (POST /batches and /batches/estimate) may be this large.
    max_dataset_bytes: int = 52_428_800

    worker_pool: Literal["threads", "prefork", "solo"] = "threads"
    worker_concurrency: int = Field(default=200, ge=1, le=2000)
    worker_queues: str = "ownkey"

    step_timeout_seconds: float = Field(default=120.0, gt=0)
    # A claimed step's lease lasts its call timeout plus this margin. A lease that runs out
    # means its worker died (or hung): the reconciler hands the step to another worker,
    # and the late result, if any, is discarded. This is the step's hard time limit.
    lease_margin_seconds: float = Field(default=30.0, ge=1)
    reconcile_interval_seconds: float = Field(default=30.0, gt=0)
    # A step queued in SQL this long whose message is in no queue of the broker (lost in a
    # Redis restart, or never sent) is enqueued again.
    requeue_after_seconds: float = Field(default=30.0, gt=0)
    # How often beat asks for due schedules to be fired (a fire happens within this much
    # of its time), and for due webhook retries to be sent.
    schedule_tick_seconds: float = Field(default=5.0, gt=0)
    webhook_sweep_seconds: float = Field(default=10.0, gt=0)
    # Webhook deliveries: one attempt's timeout; the first retry's delay, later ones
    # 3, 12, 60, 180 and 360 times it (10 s, 30 s, 2 min, 10 min, 30 min, 1 h by default),
    # each +-20%; the attempts before a delivery is marked failed.
    webhook_timeout_seconds: float = Field(default=10.0, gt=0, le=60)
    webhook_retry_base_seconds: float = Field(default=10.0, gt=0, le=3600)
    webhook_max_attempts: int = Field(default=8, ge=1, le=50)

    flower_port: int = 5555
    flower_basic_auth: SecretStr = SecretStr("")
    # Where the web UI's "Flower" link points (Flower behind a proxy); default: this
    # machine's flower_port.
    flower_url: str = ""

    log_level: str = "INFO"
    # text for a terminal; json (one object per line, with run_id/step_id while a step
    # runs) for a log collector. docker-compose.yml sets json.
    log_format: Literal["json", "text"] = "text"
    # Write each rendered prompt to the worker's log at DEBUG. Prompts hold user data:
    # only for debugging, never in production.
    log_prompts: bool = False

    # GET /metrics on the API: open when empty (keep it off the public internet), else
    # it needs `Authorization: Bearer <token>`. Workers' /metrics take the same token.
    metrics_token: SecretStr = SecretStr("")
    # A worker's own /metrics port; 0 (default) serves none. A fixed default would
    # collide when several workers share a host: give each its own (--metrics-port).
    worker_metrics_port: int = Field(default=0, ge=0, le=65535)
    metrics_host: str = "127.0.0.1"

    @field_validator("secret_key")
    @classmethod
    def _no_placeholder_secret(cls, value: SecretStr) -> SecretStr:
        if value.get_secret_value().strip().lower() in PLACEHOLDER_SECRETS:
            raise ValueError("OWNKEY_SECRET_KEY is a placeholder; generate a real key")
        return value

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'ownkey.db').resolve()}"

    @property
    def is_sqlite(self) -> bool:
        return self.resolved_database_url.startswith("sqlite")

    @property
    def master_key_file(self) -> Path:
        return self.data_dir / "secret.key"


@lru_cache
def get_settings() -> Settings:
    return Settings()
