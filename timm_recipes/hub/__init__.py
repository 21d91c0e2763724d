"""Ship trained weights: export them in timm's Hub layout, write their model card, publish them to the Hugging Face Hub.

    export(model, folder, recipe=..., metrics=[Measurement(...)], variant="ema")   # verified timm Hub folder
    publish(folder, "org/recipe_resnet18.ema_digits32")                          # one commit, or nothing

Weights go out as safetensors only; ``config.json`` names timm's own architecture when the recipe model's inference
architecture is a plain timm one, so that ``timm.create_model("hf-hub:org/recipe_resnet18.ema_digits32",
pretrained=True)`` works without this package, and ``timm.create_model("recipe_resnet18", pretrained=True,
pretrained_cfg_overlay=dict(hf_hub_id="org/recipe_resnet18.ema_digits32", num_classes=10), num_classes=10)``
with it. Every export is loaded back and compared with its source model before anything leaves the machine.

Testing without the Hub: the test suite runs the real ``huggingface_hub`` client against a Hub-compatible server of
its own on 127.0.0.1 (``HF_ENDPOINT``), through both of the client's upload paths for large files that a local server
can serve: git-LFS (``HF_HUB_DISABLE_XET=1``) and files sent inline in the commit. The third path, the Xet transfer
protocol that ``huggingface_hub`` uses by default when ``hf_xet`` is installed (content-defined chunks uploaded to
Xet storage servers), cannot be served offline; with the real Hub it is used transparently.
"""

from __future__ import annotations

from timm_recipes.hub.card import VARIANTS, Measurement, build_model_card
from timm_recipes.hub.errors import (
    ExportError,
    HubAuthError,
    HubConflictError,
    HubConnectionError,
    HubError,
    HubRepoNotFoundError,
)
from timm_recipes.hub.exporting import default_tag, export, native_architecture, variant_name, verify_export
from timm_recipes.hub.publishing import PublishResult, check_export_folder, publish
from timm_recipes.hub.runs import export_run, run_measurements

__all__ = [
    "VARIANTS",
    "ExportError",
    "HubAuthError",
    "HubConflictError",
    "HubConnectionError",
    "HubError",
    "HubRepoNotFoundError",
    "Measurement",
    "PublishResult",
    "build_model_card",
    "check_export_folder",
    "default_tag",
    "export",
    "export_run",
    "native_architecture",
    "publish",
    "run_measurements",
    "variant_name",
    "verify_export",
]
