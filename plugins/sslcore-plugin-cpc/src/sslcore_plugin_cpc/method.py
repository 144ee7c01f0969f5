"""CPC v2 (Hénaff et al. 2020, "Data-Efficient Image Recognition with Contrastive Predictive Coding"; van den Oord
et al. 2018 for CPC v1), following the appendix A.2 pseudo-code ``CPC(latents, target_dim=64, emb_scale=0.1,
steps_to_ignore=2, steps_to_predict=3)``:

- the image is cut into a grid of overlapping patches, each augmented on its own (:class:`PatchGrid`); the patch
  encoder (``[backbone]``, BatchNorm replaced by layer norm) maps each patch to a vector: the grid ``z`` (B, D, G, G);
- the context network (``[context]``, causal in rows) gives ``c`` with row i summarising rows <= i;
- targets ``t = Conv1x1(z)`` (``target_dim``); for each offset k a prediction ``p_k = Conv1x1_k(c)``, row i of
  which predicts the target at row i + k, same column (pseudo-code: ``preds_i[:, :-(i+1)]``, ``labels = b*H*W +
  (i+1)*W + col``, offsets ``i + 1`` for ``i`` in ``range(steps_to_ignore, steps_to_predict)``: k = 3);
- InfoNCE with every target of the (global) batch as a candidate: ``logits = p . t`` scaled by ``emb_scale`` = the
  ``infonce`` loss with ``normalize = false`` and ``temperature = 1 / emb_scale``; summed over offsets (``loss +=``);
- four directions (sec. 4.1 "predicting lengths and directions"): the same context network on the grid rotated by
  0, 90, 180, 270 degrees, with a predictor per direction and offset; the losses are summed.

The targets are read through the ``in_batch`` key store, so with N processes the candidates are every rank's targets,
gathered with gradient: N processes with batch B train as one with batch N*B.
"""

from __future__ import annotations

import attrs
import torch
from torch import nn

from sslcore.errors import SslcoreError
from sslcore.method import Batch, Method, MethodOutput, MethodParts, StepInfo
from sslcore_plugin_cpc.config import CPCConfig
from sslcore_plugin_cpc.patches import PatchGrid


class CPC(Method):
    """Patch encoder -> feature grid -> causal context -> per-offset linear predictions, InfoNCE against every patch
    target of the global batch, in ``directions`` rotations of the grid."""

    def __init__(self, backbone: nn.Module, context: nn.Module, key_store: nn.Module, loss: nn.Module,
                 config: CPCConfig) -> None:
        super().__init__()
        if config.layer_norm and any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in backbone.modules()):
            raise SslcoreError("cpc with method.layer_norm = true needs a patch encoder without BatchNorm",
                               hint='set [backbone] norm_layer = "groupnorm1" (CPC v2 layer norm), '
                                    "or method.layer_norm = false for CPC v1's batch norm")
        self.backbone = backbone
        self.patches = PatchGrid(config.grid, config.patch_size, config.stride, min_scale=config.min_scale,
                                 flip=config.flip, color_drop=config.color_drop)
        self.context = context
        self.key_store = key_store
        self.loss = loss
        self.offsets = config.offsets
        self.rotations = {1: (0,), 2: (0, 2), 4: (0, 1, 2, 3)}[config.directions]
        self.target = nn.Conv2d(backbone.num_features, config.target_dim, 1)
        self.predictors = nn.ModuleList(
            nn.Conv2d(context.out_dim, config.target_dim, 1) for _ in range(len(self.rotations) * len(self.offsets))
        )

    def forward(self, batch: Batch, step: StepInfo) -> MethodOutput:
        if len(batch.views) != 1:
            raise SslcoreError(f"cpc cuts one view per image into patches, the batch has {len(batch.views)}",
                               hint='use [views] kind = "eval" (the patches are augmented by the method)')
        images = batch.views[0]
        grid = self.patches.grid
        features = self.backbone(self.patches(images))
        features = features.view(images.shape[0], grid, grid, -1).permute(0, 3, 1, 2)
        losses = self.predictive_losses(features)
        return MethodOutput(sum(losses.values()), {f"loss_{name}": value.detach() for name, value in losses.items()})

    def predictive_losses(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        """The InfoNCE loss of each (rotation, offset) task on a ``(B, D, G, G)`` feature grid, named ``r<degrees>_k<k>``."""
        batch, _, grid, _ = features.shape
        targets = self.target(features).permute(0, 2, 3, 1).reshape(batch * grid * grid, -1)
        keys = self.key_store.read(targets)  # the global batch of targets, gathered with gradient
        positions = torch.arange(grid * grid, device=features.device).view(grid, grid)
        first = torch.arange(batch, device=features.device)[:, None] * grid * grid
        losses, predictors = {}, iter(self.predictors)
        for rotation in self.rotations:
            context = self.context(torch.rot90(features, rotation, dims=(2, 3)))
            # rotated position (r, c) is original position positions_r[r, c]; row r predicts row r + k
            positions_r = torch.rot90(positions, rotation)
            for k in self.offsets:
                prediction = next(predictors)(context)[:, :, : grid - k]
                query = prediction.permute(0, 2, 3, 1).reshape(-1, prediction.shape[1])
                rows = (first + positions_r[k:].reshape(1, -1)).reshape(-1)
                task = attrs.evolve(keys, positive_index=keys.positive_index[rows])
                losses[f"r{90 * rotation}_k{k}"] = self.loss(query, task)
        return losses


def build_cpc(config: CPCConfig, parts: MethodParts) -> CPC:
    """CPC v2: a grid of per-patch augmented patches, causal context, predictions k rows ahead in 4 directions."""
    backbone = parts.backbone()
    context = parts.component("context", in_dim=backbone.num_features)
    key_store = parts.key_store(config.target_dim)
    if getattr(key_store, "sharding", None) != "in_batch":
        raise SslcoreError(f"cpc contrasts each prediction with the targets of the current batch, got key store "
                           f"{type(key_store).__name__}", hint='set [key_store] kind = "in_batch"')
    return CPC(backbone, context, key_store, parts.loss(), config)
