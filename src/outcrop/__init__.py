"""outcrop: Amazon Bedrock inference profiles, self-hosted."""

__version__ = "0.1.0"
