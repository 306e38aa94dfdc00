"""bedrock-runtime: model invocation through foundation models and inference profiles."""

from __future__ import annotations

from outcrop.runtime.chaos import Chaos
from outcrop.runtime.invoke import InvocationRecord, Runtime

__all__ = ["Chaos", "InvocationRecord", "Runtime"]
