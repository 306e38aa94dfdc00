"""ListFoundationModels and GetFoundationModel: the catalogue that ``copyFrom`` is checked against."""

from __future__ import annotations

from typing import Any

from outcrop.context import RequestContext
from outcrop.control.catalog import Catalog
from outcrop.control.identifiers import PROFILE_ARN
from outcrop.errors import ValidationError


class FoundationModels:
    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    async def list(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        provider = (params.get("byProvider") or "").lower()
        modality = params.get("byOutputModality")
        inference_type = params.get("byInferenceType")
        customization = params.get("byCustomizationType")
        summaries = []
        for model in self.catalog.models_in(ctx.region):
            if provider and model.provider.lower() != provider:
                continue
            if modality and modality not in model.output_modalities:
                continue
            if inference_type and inference_type not in model.inference_types_in(ctx.region):
                continue
            if customization:  # outcrop offers no model customization
                continue
            summaries.append(model.summary(ctx.region))
        return {"modelSummaries": summaries}

    async def get(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        identifier = params["modelIdentifier"]
        model_id = identifier
        m = PROFILE_ARN.fullmatch(identifier)
        if m is not None:
            model_id = m["id"] if m["kind"] == "foundation-model" and m["region"] == ctx.region else ""
        model = self.catalog.model_in(ctx.region, model_id)
        if model is None:
            raise ValidationError("The provided model identifier is invalid.")
        return {"modelDetails": model.summary(ctx.region)}
