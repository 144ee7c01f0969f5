"""CMC (Tian, Krishnan, Isola, "Contrastive Multiview Coding", ECCV 2020): two modalities of one image, L and ab.

Two encoders, one per view (``[backbones.l]`` with 1 input channel, ``[backbones.ab]`` with 2), each followed by its
projection head (``[heads.l]``, ``[heads.ab]``) and L2 normalisation (HobbitLong/CMC ``models/resnet.py``:
``fc`` then ``Normalize(2)``). The objective is symmetric across views (sec. 3.2, Eq. 2-3): each view's embedding is
the anchor, and the OTHER view's key store gives its positive and its negatives; a store holds the embeddings of the
view it is named after (``[key_stores.l]`` the L embeddings, scored by the ab anchors). The loss is
``loss(l -> ab store) + loss(ab -> l store)``, two instances of ``[loss]`` (NCE keeps one Z per direction).

Where the keys come from (``keys_from``):

- ``online`` (the official ``train_CMC.py``): one crop; memory banks (``NCE/NCEAverage.py``): the positive is the
  other view's bank entry for the sample, the negatives ``--nce_k`` random entries; both banks are then refreshed
  with this step's embeddings, ``v <- normalize(m v + (1 - m) f)``. ``NCEAverage.forward`` updates the banks in the
  forward pass after reading them; here the writes are ``KeyWrite``s the engine applies after the optimizer step,
  which reads no bank: the same banks.
- ``target`` (PyContrast, ``learning/contrast_trainer.py`` ``_train_moco`` with ``memory/mem_moco.py``
  ``CMCMoCo``): two crops; a momentum encoder (``[target_updater]``) encodes the second crop into keys; each
  view's query has the other view's key as positive and the other view's queue as negatives (``logits1 = q1 .
  [k2, queue2]``), and each queue is then fed its view's keys.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from sslcore.components.key_stores import KeyStore
from sslcore.components.shuffle_bn import grouped_forward, shuffled_forward
from sslcore.errors import SslcoreError
from sslcore.keys import Keys, KeysMismatch
from sslcore.method import Batch, KeyWrite, Method, MethodOutput, MethodParts, StepInfo
from sslcore_plugin_cmc.color import MODALITIES, ColorSpace, rgb_features
from sslcore_plugin_cmc.config import CMCConfig


class CMCEncoder(nn.Module):
    """RGB images -> ``[normalize(head_l(backbone_l(L))), normalize(head_ab(backbone_ab(ab)))]``, concatenated
    (``(B, 2 * dim)``, as PyContrast's ``CMCSingleHead`` returns them), so one module is momentum-updated and
    batch-shuffled as a whole."""

    def __init__(self, color: ColorSpace, backbones: dict[str, nn.Module], heads: dict[str, nn.Module]) -> None:
        super().__init__()
        self.color = color
        self.backbones = nn.ModuleDict(backbones)
        self.heads = nn.ModuleDict(heads)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        channels = self.color(images)
        return torch.cat([F.normalize(self.heads[name](self.backbones[name](channels[:, rows])).float(), dim=1)
                          for name, rows in MODALITIES.items()], dim=1)


class CMC(Method):
    """One CMC step: queries of both views, keys (the queries themselves, or the momentum encoder's), each view's
    queries against the other view's store, the sum of the two losses, the stores written after the step."""

    def __init__(
        self,
        encoder: CMCEncoder,
        stores: dict[str, KeyStore],
        losses: dict[str, nn.Module],
        *,
        updater: Any | None = None,
        shuffle_bn: bool = False,
        bn_group_size: int | None = None,
        combination: str = "[loss] and [key_stores]",
        source: str | None = None,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.target = self.follow(encoder, updater, when="before_forward") if updater is not None else None
        self.stores = nn.ModuleDict(stores)
        self.losses = nn.ModuleDict(losses)  # losses[v]: view v's anchors against the other view's store
        self.shuffle_bn, self.bn_group_size = shuffle_bn, bn_group_size
        self.combination, self.source = combination, source

    def forward(self, batch: Batch, step: StepInfo) -> MethodOutput:  # type: ignore[override]
        wanted = 1 if self.target is None else 2
        if len(batch.views) != wanted:
            raise SslcoreError(
                f"cmc with keys from {'the online' if self.target is None else 'a momentum'} encoder trains on "
                f"{wanted} view{'s' * (wanted > 1)} per image, the batch has {len(batch.views)}",
                hint=f"set [views] num_views = {wanted}",
            )
        queries = dict(zip(MODALITIES, grouped_forward(self.encoder, batch.views[0], self.bn_group_size).chunk(2, 1)))
        if self.target is None:  # train_CMC.py: the banks are read and written with the step's own embeddings
            keys = {name: query.detach() for name, query in queries.items()}
        else:  # PyContrast _train_moco: k = model_ema(x2), shuffled across the global batch
            with torch.no_grad():
                encode = shuffled_forward if self.shuffle_bn else grouped_forward
                keys = dict(zip(MODALITIES, encode(self.target, batch.views[1], self.bn_group_size).chunk(2, 1)))
        # NCEAverage.forward: out_l = memory_ab . l, out_ab = memory_l . ab. The official code draws one set of
        # negative indices for both banks; here each store draws its own (from the step's seeded generator).
        losses = {}
        for name, other in (("l", "ab"), ("ab", "l")):
            losses[name] = self._loss(name, queries[name], self.stores[other].read(keys[other], index=batch.index))
        writes = [KeyWrite(self.stores[name], keys[name], batch.index) for name in MODALITIES]
        logs = {f"loss_{name}": loss.detach() for name, loss in losses.items()}
        return MethodOutput(losses["l"] + losses["ab"], logs, writes)

    def _loss(self, name: str, query: torch.Tensor, keys: Keys) -> torch.Tensor:
        try:
            return self.losses[name](query, keys)
        except KeysMismatch as error:
            raise SslcoreError(f"{self.combination} do not fit: {error.what}", where=self.source,
                               hint="NCE needs memory banks, infonce fits every store (docs/components.md)") from None

    def evaluation_network(self) -> nn.Module:
        """Both backbones' features on RGB images, concatenated (the paper evaluates on L and ab together)."""
        return rgb_features(self.encoder.color, self.encoder.backbones)

    def exported_networks(self) -> dict[str, nn.Module]:
        """The two backbones, ``backbone_l.safetensors`` (1 input channel) and ``backbone_ab.safetensors`` (2)."""
        return dict(self.encoder.backbones.items())


def build_cmc(config: CMCConfig, parts: MethodParts) -> CMC:
    """CMC: L and ab encoders, each view's anchor against the other view's memory bank (or momentum queue)."""
    backbones = {name: parts.backbone(name) for name in MODALITIES}
    for name, rows in MODALITIES.items():
        _check_channels(name, backbones[name], rows.stop - rows.start, parts.recipe.source)
    heads = {name: parts.head(name, backbones[name].num_features) for name in MODALITIES}
    if heads["l"].out_dim != heads["ab"].out_dim:
        raise SslcoreError(
            f"cmc compares L and ab embeddings, but [heads.l] gives {heads['l'].out_dim} dimensions and [heads.ab] "
            f"{heads['ab'].out_dim}", where=parts.recipe.source, hint="give both heads the same out_dim",
        )
    views = parts.recipe.components["views"]
    mean, std = (getattr(views.config, field, None) for field in ("mean", "std"))
    if mean is None or std is None:
        raise SslcoreError(f"cmc converts normalised RGB views, but [views] kind '{views.kind}' has no mean and std",
                           where=parts.recipe.source, hint='use [views] kind = "cmc"')
    encoder = CMCEncoder(ColorSpace(config.color_space, mean, std), backbones, heads)
    stores = {name: parts.key_store(heads[name].out_dim, name) for name in MODALITIES}
    losses = {name: parts.loss() for name in MODALITIES}  # a fresh instance each: NCE's Z per direction
    updater = parts.target_updater() if config.keys_from == "target" else None
    kinds = parts.recipe.components
    combination = (f"[loss] '{kinds['loss'].kind}' and [key_stores.l] '{kinds['key_stores.l'].kind}' / "
                   f"[key_stores.ab] '{kinds['key_stores.ab'].kind}'")
    return CMC(encoder, stores, losses, updater=updater, shuffle_bn=config.shuffle_bn,
               bn_group_size=config.bn_group_size, combination=combination, source=parts.recipe.source)


def _check_channels(name: str, backbone: nn.Module, wanted: int, source: str | None) -> None:
    """Raise unless the backbone's first convolution takes the ``wanted`` channels of its view."""
    first = next((module for module in backbone.modules() if isinstance(module, nn.Conv2d)), None)
    if first is not None and first.in_channels != wanted:
        raise SslcoreError(
            f"[backbones.{name}] takes {first.in_channels} input channels, but the {name} view has {wanted}",
            where=source, hint=f"set [backbones.{name}] in_chans = {wanted}",
        )
