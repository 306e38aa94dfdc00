"""The one schema, for SQLite and PostgreSQL alike (SQLAlchemy Core).

Times are stored as integer microseconds since the Unix epoch: exact, ordered the same way on both
databases, and free of time-zone conversions. Migrations in ``migrations/versions`` create exactly these
tables; ``tests/unit/test_schema.py`` checks that the two agree.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Integer, MetaData, String, Table, Text, UniqueConstraint

metadata = MetaData()

inference_profiles = Table(
    "inference_profiles",
    metadata,
    Column("account", String(12), primary_key=True),
    Column("region", String(32), primary_key=True),
    Column("profile_id", String(12), primary_key=True),
    Column("name", String(64), nullable=False),
    Column("description", String(200)),
    # JSON list of foundation-model ARNs, in the order GetInferenceProfile returns them.
    Column("models", Text, nullable=False),
    # The ``copyFrom`` ARN of the create request: write-only at AWS, kept for routing and audit.
    Column("source_arn", String(2048), nullable=False),
    Column("created_us", BigInteger, nullable=False),
    Column("updated_us", BigInteger, nullable=False),
    UniqueConstraint("account", "region", "name", name="uq_inference_profiles_name"),
    Index("ix_inference_profiles_order", "account", "region", "created_us", "profile_id"),
)

profile_tags = Table(
    "profile_tags",
    metadata,
    Column("account", String(12), primary_key=True),
    Column("region", String(32), primary_key=True),
    Column("profile_id", String(12), primary_key=True),
    Column("key", String(128), primary_key=True),
    Column("value", String(256), nullable=False),
)

# One row per (account, Region): the number of application profiles, updated in the same transaction as
# each create and delete, so that the quota holds across server processes sharing one database.
profile_counts = Table(
    "profile_counts",
    metadata,
    Column("account", String(12), primary_key=True),
    Column("region", String(32), primary_key=True),
    Column("n", Integer, nullable=False),
)

idempotency_tokens = Table(
    "idempotency_tokens",
    metadata,
    Column("account", String(12), primary_key=True),
    Column("region", String(32), primary_key=True),
    Column("operation", String(64), primary_key=True),
    Column("token", String(256), primary_key=True),
    Column("request_hash", String(64), nullable=False),
    # JSON of the response first given for this token.
    Column("response", Text, nullable=False),
    Column("created_us", BigInteger, nullable=False),
    Index("ix_idempotency_tokens_created", "created_us"),
)

settings = Table(
    "settings",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

# Credentials for SigV4. The secret is kept as issued because verifying a signature needs it (AWS keeps
# it too); it is never logged, and the database file is created readable by its owner only.
access_keys = Table(
    "access_keys",
    metadata,
    Column("access_key_id", String(128), primary_key=True),
    Column("secret_access_key", String(128), nullable=False),
    Column("account", String(12), nullable=False),
    Column("user_name", String(64), nullable=False),
    # An IAM-style identity policy (JSON); NULL: the account's root, allowed everything.
    Column("policy", Text),
    Column("created_us", BigInteger, nullable=False),
)

# Bedrock API keys (``Authorization: Bearer …``), stored only as the SHA-256 of the key; ``key_id`` is
# the short, non-secret name shown by ``outcrop api-keys list`` and used to delete one.
api_keys = Table(
    "api_keys",
    metadata,
    Column("key_hash", String(64), primary_key=True),
    Column("key_id", String(32), nullable=False, unique=True),
    Column("account", String(12), nullable=False),
    Column("user_name", String(64), nullable=False),
    Column("policy", Text),
    Column("created_us", BigInteger, nullable=False),
)


# Metering (``outcrop.metering``): one row per invocation, written from the local journal in batches and
# never updated; costs are integer pico-USD (10^-12), computed at invocation time with the price then in
# effect, so a later price change never rewrites history.
usage_events = Table(
    "usage_events",
    metadata,
    Column("request_id", String(64), primary_key=True),
    Column("time_us", BigInteger, nullable=False),
    Column("account", String(12), nullable=False),
    Column("source_region", String(32), nullable=False),
    Column("inference_region", String(32)),
    Column("operation", String(64), nullable=False),
    # The modelId as the caller passed it, and the CloudWatch ModelId dimension it counts under.
    Column("model_id", String(2048), nullable=False),
    Column("model_dim", String(256), nullable=False),
    Column("profile_arn", String(256)),
    Column("profile_id", String(128)),
    Column("profile_type", String(16)),
    Column("foundation_model", String(128), nullable=False),
    Column("input_tokens", BigInteger, nullable=False),
    Column("output_tokens", BigInteger, nullable=False),
    Column("cache_read_tokens", BigInteger, nullable=False),
    Column("cache_write_tokens", BigInteger, nullable=False),
    Column("latency_ms", Integer, nullable=False),
    Column("ttft_ms", Integer),
    # success | client_error | server_error | throttled, and the AWS error code of a failure.
    Column("outcome", String(16), nullable=False),
    Column("error_code", String(64)),
    Column("cost_pusd", BigInteger, nullable=False),
    Column("identity", String(2048), nullable=False),
    # JSON object: the Converse call's requestMetadata (AWS logs it with the invocation; {} when none).
    Column("request_metadata", Text, nullable=False, server_default="{}"),
    # JSON object: the profile's tags at invocation time.
    Column("tags", Text, nullable=False),
    Index("ix_usage_events_account_time", "account", "time_us"),
)

# Sums of ``usage_events`` per minute ("m"), hour ("h") and day ("d"), maintained in the transaction that
# inserts the events. ``tag_key`` = "" rows count every event once; rows with a tag key count the events
# that carried that tag, by value.
usage_rollups = Table(
    "usage_rollups",
    metadata,
    Column("account", String(12), primary_key=True),
    Column("granularity", String(1), primary_key=True),
    Column("tag_key", String(128), primary_key=True),
    Column("period_us", BigInteger, primary_key=True),
    Column("source_region", String(32), primary_key=True),
    Column("model_dim", String(256), primary_key=True),
    Column("profile_arn", String(256), primary_key=True),
    Column("foundation_model", String(128), primary_key=True),
    Column("identity", String(512), primary_key=True),
    Column("tag_value", String(256), primary_key=True),
    Column("events", BigInteger, nullable=False),
    Column("input_tokens", BigInteger, nullable=False),
    Column("output_tokens", BigInteger, nullable=False),
    Column("cache_read_tokens", BigInteger, nullable=False),
    Column("cache_write_tokens", BigInteger, nullable=False),
    Column("client_errors", BigInteger, nullable=False),
    Column("server_errors", BigInteger, nullable=False),
    Column("throttles", BigInteger, nullable=False),
    Column("latency_ms", BigInteger, nullable=False),
    Column("cost_pusd", BigInteger, nullable=False),
)

# Chaos rules of ``/_outcrop/chaos`` (``outcrop.runtime.chaos``), shared by every server process; ``rule``
# is the rule's JSON as GET lists it.
chaos_rules = Table(
    "chaos_rules",
    metadata,
    Column("rule_id", String(32), primary_key=True),
    Column("rule", Text, nullable=False),
    Column("created_us", BigInteger, nullable=False),
)
