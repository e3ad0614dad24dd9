"""Settings: paths, model tiers, prices and limits — the one place that reads env vars and config files.

Precedence, lowest first: the defaults below < a TOML file (`--config FILE` or GEMMA_CHAT_CONFIG)
< environment variables (GEMMA_CHAT_<FIELD>, GEMMA_CHAT_<TIER>_<FIELD>) < command-line flags.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlsplit

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from .errors import ConfigError

ENV_PREFIX = "GEMMA_CHAT_"
PROJECT_ROOT = Path(__file__).resolve().parent.parent
# Not settings but facts about the machine, read by backends/cpu_features.py: a process started with
# none of the caller's settings still inherits them.
CACHE_DIR_ENV = "GEMMA_CHAT_CACHE_DIR"  # the per-machine cache; default: the platform's user cache folder
# Test switch: every model loaded with llama.cpp's extra CPU buffers on dies of a real SIGSEGV at its
# first decode, as on the AMX Xeon (FIELD_NOTES), so a run on any CPU also covers that one.
SIMULATE_AMX_CRASH_ENV = "GEMMA_CHAT_SIMULATE_AMX_CRASH"
MACHINE_ENV = (CACHE_DIR_ENV, SIMULATE_AMX_CRASH_ENV)


def environment_without_settings(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment minus every GEMMA_CHAT_* setting: for an app or worker started afresh."""
    environ = os.environ if environ is None else environ
    return {k: v for k, v in environ.items() if not k.startswith(ENV_PREFIX) or k in MACHINE_ENV}


APP_NAME = "gemma-chat"


def package_version() -> str:
    from importlib import metadata

    try:
        return metadata.version(APP_NAME)
    except metadata.PackageNotFoundError:  # a checkout run without `pip install -e .`
        return "unknown (not installed)"


def running_from_checkout() -> bool:
    """A source checkout (a clone, or an editable install of one) rather than an installed package."""
    return (PROJECT_ROOT / "pyproject.toml").is_file()


@dataclass(frozen=True)
class DefaultPaths:
    """Where data and models go unless a flag, variable or settings file says otherwise.

    From a checkout, ./data and the checkout's models/ (as always); installed, the platform's
    per-user data folder (~/.local/share/gemma-chat, ~/Library/Application Support/gemma-chat,
    %LOCALAPPDATA%\\gemma-chat), with the models in it.
    """

    installation: str
    data_dir: Path
    models_dir: Path


def default_paths() -> DefaultPaths:
    if running_from_checkout():
        return DefaultPaths(f"checkout at {PROJECT_ROOT}", Path("data"), PROJECT_ROOT / "models")
    import platformdirs

    data_dir = platformdirs.user_data_path(APP_NAME, appauthor=False)
    return DefaultPaths(f"installed package {package_version()} in {PROJECT_ROOT}", data_dir, data_dir / "models")


def physical_cores() -> int:
    import psutil

    return psutil.cpu_count(logical=False) or os.cpu_count() or 1


@dataclass(frozen=True)
class TierSettings:
    """One model tier. Field names mirror llama.cpp's arguments where they are the same thing."""

    name: str
    display_name: str
    model_file: str  # a file name inside models_dir, or an absolute path
    price: int
    max_tokens: int = 512
    n_ctx: int = 4096
    n_threads: int = 0  # 0 = physical cores
    n_gpu_layers: int | str = "auto"  # auto: every layer when llama.cpp was built for a GPU, else 0; -1 = all
    temperature: float | None = None  # None = the prompt format's recommended sampling; 0 = greedy
    required_quantization: str = ""  # e.g. "Q8_0"; empty accepts any
    # Where the model runs: "local" (a supervised llama.cpp worker process on this machine) or
    # "openai" (any OpenAI-compatible server: llama-server, vLLM, Ollama, llama_cpp.server).
    backend: str = "local"
    base_url: str = ""  # openai: e.g. http://gpu-box:8080/v1
    model: str = ""  # openai: the server's model name (empty: the server's only model)
    api_key_env: str = ""  # openai: the environment variable that holds the API key, if any
    api: str = "chat"  # openai: "chat" (/chat/completions) or "completions" (a base model, our own prompt)
    timeout_s: float = 60.0  # openai: connect and between-token timeout
    max_concurrent: int = 1  # openai: generations sent to the server at once
    # local: sequences the worker decodes together (continuous batching); auto = the most that fit
    # in the memory plan, at most MAX_AUTO_PARALLEL. Beyond them requests queue.
    parallel: int | str = "auto"
    # local: RAM for conversations' KV state evicted from their slot, restored when they come back
    prompt_cache_mb: int = 256

    def model_path(self, models_dir: Path) -> Path:
        path = Path(self.model_file).expanduser()
        return path if path.is_absolute() else models_dir / path


MAX_AUTO_PARALLEL = 4  # llama-server's default too; more slots mostly split the same cores


DEFAULT_TIERS = {
    "mini": TierSettings(
        name="mini",
        display_name="Gemma 3 1B",
        model_file="gemma-3-1b-it-Q8_0.gguf",
        price=1,
    ),
    "pro": TierSettings(
        name="pro",
        display_name="Gemma 3 12B Q8_0",
        model_file="gemma-3-12b-it-Q8_0.gguf",
        price=3,
        required_quantization="Q8_0",
    ),
}


def redact_url(url: str) -> str:
    """The URL without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return parts._replace(netloc=netloc).geturl()


@dataclass(frozen=True)
class Settings:
    data_dir: Path = field(default_factory=lambda: default_paths().data_dir)
    models_dir: Path = field(default_factory=lambda: default_paths().models_dir)
    # accounts
    starting_balance: int = 10
    allow_registration: bool = True  # false: only administrators make accounts (Admin tab, `users create`)
    bcrypt_rounds: int = 12
    # Lock-outs are per (username, client): five wrong passwords from one client lock that client
    # out of that account for lockout_duration_s, twice as long for each lock-out in a row.
    lockout_attempts: int = 5
    lockout_window_s: int = 15 * 60
    lockout_duration_s: int = 15 * 60
    session_idle_s: int = 30 * 60  # a session unused this long ends
    session_max_age_s: int = 7 * 24 * 3600  # a session ends this long after sign-in, used or not
    # the web edge (web/app.py): anonymous work is bounded before any bcrypt runs
    signin_attempts_per_minute: int = 20  # sign-ins and registrations per client IP
    registrations_per_hour: int = 5  # new accounts per client IP
    signin_concurrency: int = 2  # bcrypt checks running at once, for everyone
    trust_proxy_headers: bool = False  # take the client IP and scheme from X-Forwarded-For/-Proto...
    forwarded_allow_ips: str = "127.0.0.1"  # ...sent by these proxies only (uvicorn's list: IPs, networks or "*")
    # Host names the app answers to besides localhost, 127.0.0.1, [::1] and --host (a LAN name, the
    # proxy's public name); any other Host is refused (DNS rebinding). Comma-separated in the env.
    allowed_hosts: tuple[str, ...] = ()
    events_per_user: int = 8  # an account's Gradio events queued or running at once (all its pages)
    connections_per_address: int = 64  # open connections from one client address (not a trusted proxy)
    request_body_timeout_s: int = 30  # a request's whole body must arrive within this, as its head within 10 s
    # credits
    max_topup: int = 1000
    self_topup: bool = True  # false: users ask an administrator for credits (Admin tab, `credits grant`)
    stale_hold_s: int = 15 * 60  # a hold older than this cannot belong to a running generation
    orphan_sweep_s: int = 30  # PostgreSQL: how often an instance releases the holds of instances that died
    # chat
    max_message_chars: int = 8000
    history_page_size: int = 20
    queue_size: int = 8  # waiting generations per model, beyond the running one
    # the /v1 API (web/api.py)
    api_rate_per_minute: int = 60  # requests per user per minute, over all of the user's keys
    # operations (web/operations.py): /metrics in Prometheus' format, to loopback or an admin's API key
    metrics: bool = False
    log_format: str = "text"  # "json": one JSON object per line on stdout and in the log file
    # models
    strict_models: bool = False  # no bundled-demo fallback for a missing file
    memory_margin_bytes: int = 512 * 1024**2
    # llama.cpp's extra CPU buffer types (AMX and friends) crash on some CPUs: "auto" probes them once
    # per CPU and llama-cpp-python version and remembers the answer in the data dir.
    cpu_extra_buffers: str = "auto"
    worker_crash_limit: int = 3  # this many worker crashes within worker_crash_window_s...
    worker_crash_window_s: int = 300  # ...mark the tier unavailable until a restart or an admin action
    # storage: empty = the SQLite file in the data dir; postgresql://user@host/db = a shared server
    database_url: str = ""
    busy_timeout_ms: int = 5000
    tiers: Mapping[str, TierSettings] = field(default_factory=lambda: dict(DEFAULT_TIERS))

    @property
    def db_path(self) -> Path:
        return self.data_dir / "gemma_chat.db"

    @property
    def database_target(self) -> Path | str:
        """What open_database() takes: the PostgreSQL URL when one is set, else the SQLite file."""
        return self.database_url or self.db_path

    @property
    def database_label(self) -> str:
        """The database for messages: the file, or the URL without its password."""
        return redact_url(self.database_url) if self.database_url else str(self.db_path)

    @property
    def log_path(self) -> Path:
        return self.data_dir / "gemma_chat.log"

    def tier(self, name: str) -> TierSettings:
        try:
            return self.tiers[name]
        except (KeyError, TypeError):  # TypeError: a name that is not a string (a list from a hostile client)
            # At most 40 characters of it: a hostile client's megabyte is not echoed back.
            raise ConfigError(f"Unknown model tier {str(name)[:40]!r}; choose one of: {', '.join(self.tiers)}.") from None


_TIER_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,19}")
_SCALAR_FIELDS = {f.name: f for f in dataclasses.fields(Settings) if f.name != "tiers"}
_TIER_FIELDS = {f.name: f for f in dataclasses.fields(TierSettings) if f.name != "name"}


def _coerce(value: Any, annotation: str, where: str) -> Any:
    """Turn a TOML or env value into the field's type, with a message naming where it came from."""
    kind = annotation.replace("Path", "path")
    try:
        if kind == "bool":
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if kind == "int | str":  # a count or "auto" (parallel, n_gpu_layers)
            if isinstance(value, str) and value.strip().lower() == "auto":
                return "auto"
            kind = "int"
        if kind == "int":
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(str(value).strip()) if isinstance(value, str) else int(value)
        if kind.startswith("tuple"):  # a TOML array, or comma-separated text from the environment
            items = value.split(",") if isinstance(value, str) else value
            if not isinstance(items, (list, tuple)) or not all(isinstance(item, str) for item in items):
                raise ValueError
            return tuple(item.strip() for item in items if item.strip())
        if kind == "path":
            return Path(str(value)).expanduser()
        if kind.startswith("float"):  # "float | None"
            kind = "number"
            if isinstance(value, bool):
                raise ValueError
            return float(str(value).strip()) if isinstance(value, str) else float(value)
        return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: {value!r} is not a valid {kind}.") from None


def _check(settings: Settings) -> Settings:
    positive = [
        "bcrypt_rounds", "lockout_attempts", "max_topup", "history_page_size", "max_message_chars",
        "session_idle_s", "session_max_age_s", "signin_attempts_per_minute", "signin_concurrency",
        "api_rate_per_minute", "orphan_sweep_s", "events_per_user", "connections_per_address",
        "request_body_timeout_s",
    ]
    for name in positive:
        if getattr(settings, name) < 1:
            raise ConfigError(f"{name} must be at least 1.")
    if settings.starting_balance < 0:
        raise ConfigError("starting_balance cannot be negative.")
    if settings.database_url and not settings.database_url.startswith(("postgresql://", "postgres://")):
        raise ConfigError("database_url must be empty (SQLite in the data dir) or a postgresql://user@host/db URL.")
    if settings.registrations_per_hour < 0:
        raise ConfigError("registrations_per_hour cannot be negative (0 turns registration off).")
    if not 4 <= settings.bcrypt_rounds <= 31:
        raise ConfigError("bcrypt_rounds must be between 4 and 31.")
    if settings.log_format not in ("text", "json"):
        raise ConfigError('log_format must be "text" or "json".')
    if settings.cpu_extra_buffers not in ("auto", "on", "off"):
        raise ConfigError('cpu_extra_buffers must be "auto", "on" or "off".')
    if settings.worker_crash_limit < 1 or settings.worker_crash_window_s < 1:
        raise ConfigError("worker_crash_limit and worker_crash_window_s must be at least 1.")
    for tier in settings.tiers.values():
        if tier.backend not in ("local", "openai"):
            raise ConfigError(f'tiers.{tier.name}.backend must be "local" or "openai".')
        if tier.backend == "openai":
            if not tier.base_url.startswith(("http://", "https://")):
                raise ConfigError(f"tiers.{tier.name}.base_url must be an http:// or https:// URL for an openai backend.")
            if tier.api not in ("chat", "completions"):
                raise ConfigError(f'tiers.{tier.name}.api must be "chat" or "completions".')
            if tier.timeout_s <= 0:
                raise ConfigError(f"tiers.{tier.name}.timeout_s must be positive.")
        elif not tier.model_file:
            raise ConfigError(f"tiers.{tier.name}.model_file is required for a local backend.")
        if tier.max_concurrent < 1:
            raise ConfigError(f"tiers.{tier.name}.max_concurrent must be at least 1.")
        if tier.parallel != "auto" and tier.parallel < 1:
            raise ConfigError(f'tiers.{tier.name}.parallel must be "auto" or at least 1.')
        if tier.prompt_cache_mb < 0:
            raise ConfigError(f"tiers.{tier.name}.prompt_cache_mb cannot be negative (0 turns the RAM cache off).")
        if tier.price < 1:
            raise ConfigError(f"tiers.{tier.name}.price must be at least 1 credit.")
        if tier.max_tokens < 1 or tier.n_ctx <= tier.max_tokens:
            raise ConfigError(f"tiers.{tier.name}: max_tokens must be at least 1 and below n_ctx.")
        if tier.temperature is not None and not 0 <= tier.temperature <= 5:
            raise ConfigError(f"tiers.{tier.name}.temperature must be from 0 (greedy) to 5.")
    return settings


def load_settings(
    *,
    data_dir: str | Path | None = None,
    config_file: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Build Settings from defaults, an optional TOML file, env vars, then explicit overrides."""
    env = os.environ if env is None else env
    scalars: dict[str, Any] = {}
    tiers = {name: dataclasses.asdict(tier) for name, tier in DEFAULT_TIERS.items()}

    config_file = config_file or env.get(ENV_PREFIX + "CONFIG")
    if config_file:
        _apply_toml(Path(config_file), scalars, tiers)

    for name, spec in _SCALAR_FIELDS.items():
        key = ENV_PREFIX + name.upper()
        if key in env:
            scalars[name] = _coerce(env[key], str(spec.type), key)
    for tier_name, values in tiers.items():
        for name, spec in _TIER_FIELDS.items():
            key = f"{ENV_PREFIX}{tier_name.upper()}_{name.upper()}"
            if key in env:
                values[name] = _coerce(env[key], str(spec.type), key)

    if data_dir is not None:
        scalars["data_dir"] = Path(data_dir)
    for name, value in overrides.items():
        if name not in _SCALAR_FIELDS:
            raise ConfigError(f"Unknown setting {name!r}.")
        if value is not None:
            scalars[name] = _coerce(value, str(_SCALAR_FIELDS[name].type), name) if isinstance(value, str) else value

    settings = Settings(**scalars, tiers={name: TierSettings(**values) for name, values in tiers.items()})
    return _check(settings)


def _apply_toml(path: Path, scalars: dict[str, Any], tiers: dict[str, dict[str, Any]]) -> None:
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"Cannot read config file {path}: {exc.strerror or exc}.") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"Config file {path} is not valid TOML: {exc}.") from None

    for name, value in document.items():
        if name == "tiers":
            if not isinstance(value, dict):
                raise ConfigError(f"{path}: [tiers] must be a table.")
            for tier_name, tier_values in value.items():
                if not isinstance(tier_values, dict):
                    raise ConfigError(f"{path}: [tiers.{tier_name}] must be a table.")
                if tier_name not in tiers:  # tiers are data: a new table is a new tier
                    if not _TIER_NAME.fullmatch(tier_name):
                        raise ConfigError(f"{path}: tier names are 1-20 lowercase letters, digits or '-', not {tier_name!r}.")
                    if "price" not in tier_values:
                        raise ConfigError(f"{path}: the new tier [tiers.{tier_name}] needs a price.")
                    tiers[tier_name] = {"name": tier_name, "display_name": tier_name, "model_file": "", "price": 1}
                for key, tier_value in tier_values.items():
                    if key not in _TIER_FIELDS:
                        raise ConfigError(f"{path}: unknown setting tiers.{tier_name}.{key}.")
                    where = f"{path}: tiers.{tier_name}.{key}"
                    tiers[tier_name][key] = _coerce(tier_value, str(_TIER_FIELDS[key].type), where)
        elif name in _SCALAR_FIELDS:
            scalars[name] = _coerce(value, str(_SCALAR_FIELDS[name].type), f"{path}: {name}")
        else:
            raise ConfigError(f"{path}: unknown setting {name!r}.")
