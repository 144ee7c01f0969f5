"""The generic look-up method: views -> encoders -> heads -> keys -> loss, configured by plain data.

MoCo v1/v2/v3, SimCLR v1/v2, InvaSpread, BYOL, SimSiam and SupCon are one step with different choices
(:class:`LookupDesign`); their plugins build a :class:`LookupMethod` from the recipe's tables and a design. The
online branch (backbone + projection head, optionally a predictor) makes queries; the key branch is a target
network the engine moves (MoCo, BYOL, SimSiam) or the online branch itself (SimCLR, InvaSpread, SupCon); the key
store answers ``read`` with :class:`sslcore.keys.Keys`; the loss is ``loss(query, keys)``. Any key store and
loss whose mathematics fit can be swapped by recipe; those that do not fit stop at the first step with one line
naming both tables.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Literal

import attrs
import torch
import torch.nn.functional as F
from torch import nn

from sslcore.components.key_stores.base import KeyStore
from sslcore.components.shuffle_bn import grouped_forward, shuffled_forward
from sslcore.components.target_updaters import StopGradient
from sslcore.errors import SslcoreError
from sslcore.keys import Keys, KeysMismatch
from sslcore.method import Batch, KeyWrite, Method, MethodOutput, MethodParts, StepInfo, Timing

Pair = tuple[int, int]


@attrs.frozen(kw_only=True)
class LookupDesign:
    """A look-up method's choices.

    Attributes:
        pairs: ``(query view, key view)`` pairs. Pairwise (``joint = False``): each pair is one loss term, the
            queries of its query view against the keys read for its key view (MoCo: ``((0, 1),)``; MoCo v3,
            BYOL, SimSiam: both directions). Joint: each pair names a view's positive view.
        joint: one look-up for all views at once: every view's queries against the keys of every view of the
            global batch, each query's positive at its pair's view and the query itself left out (SimCLR's 2N,
            InvaSpread, SupCon). Needs ``keys_from = "online"``.
        keys_from: ``target``: a target network of the online encoder, moved by the engine (MoCo, BYOL,
            SimSiam); ``online``: the online encoder's own outputs (SimCLR, InvaSpread, SupCon, InstDisc).
        target_when: when the engine moves the target: ``before_forward`` (MoCo v1/v2/v3) or ``after_step``.
        head: the projection head's table, ``[heads.<head>]``.
        predictor: a ``[heads.predictor]`` on the query branch only (BYOL, SimSiam, MoCo v3).
        one_pass: all views through the online encoder as one batch, so BatchNorm normalises over every view
            (SimCLR, InvaSpread, SupCon official code); the views must share a shape.
        normalize: L2-normalise queries and keys, in float32, before the look-up (MoCo, InvaSpread, SupCon).
        reduction: how pairwise terms combine: ``sum`` (MoCo v3's ``l1 + l2``, BYOL's L + L~) or ``mean``
            (SimSiam's ``D/2 + D/2``).
        labels: supervised: the batch's labels go to the key store (SupCon).
        use_key_store: read ``[key_store]``; without it each query's key is its positive (BYOL, SimSiam).
        shuffle_bn: run the key encoder on a shuffled global batch (MoCo's shuffling BN, sec. 3.3).
        bn_group_size: samples per BatchNorm group for both encoders (None: each process's batch).
        eval_from_projector_layer: projection-head blocks kept on top of the backbone in
            :meth:`LookupMethod.evaluation_network` (SimCLR v2 fine-tunes from the first, sec. 2.2).
    """

    pairs: tuple[Pair, ...] = ((0, 1),)
    joint: bool = False
    keys_from: Literal["target", "online"] = "target"
    target_when: Timing = "after_step"
    head: str = "projector"
    predictor: bool = False
    one_pass: bool = False
    normalize: bool = False
    reduction: Literal["sum", "mean"] = "sum"
    labels: bool = False
    use_key_store: bool = True
    shuffle_bn: bool = False
    bn_group_size: int | None = None
    eval_from_projector_layer: int = 0

    def __attrs_post_init__(self) -> None:
        if self.joint and self.keys_from != "online":
            raise ValueError("a joint look-up compares every view with every view of one branch: keys_from='online'")

    @property
    def num_views(self) -> int:
        return 1 + max(max(pair) for pair in self.pairs)

    @property
    def key_views(self) -> list[int]:
        return sorted({key for _, key in self.pairs})


class LookupMethod(Method):
    """One step of a look-up method, top to bottom in :meth:`forward`.

    ``stores`` are read in order; the banks of the second and later stores are appended to the first one's keys
    (SupCon with a queue: the global batch, then the queue's labelled keys). Every store gets the step's keys as a
    :class:`KeyWrite`, applied by the engine after the optimizer step.
    """

    def __init__(
        self,
        name: str,
        design: LookupDesign,
        *,
        encoder: nn.Sequential,
        predictor: nn.Module | None,
        updater: Any | None,
        stores: list[KeyStore],
        loss: nn.Module,
        combination: str,
        source: str | None = None,
    ) -> None:
        super().__init__()
        self.name, self.design, self.combination, self.source = name, design, combination, source
        self.encoder = encoder
        self.predictor = predictor
        self.target = self.follow(encoder, updater, when=design.target_when) if updater is not None else None
        self.stores = nn.ModuleList(stores)
        self.loss = loss

    @property
    def backbone(self) -> nn.Module:  # type: ignore[override]
        return self.encoder[0]

    def forward(self, batch: Batch, step: StepInfo) -> MethodOutput:  # type: ignore[override]
        design = self.design
        views = self._views(batch)
        labels = self._labels(batch)
        # 1. The online branch: projections of every view that gives queries (and keys, from the online branch).
        projections = self._online(views)
        queries = {view: self.predictor(z) if self.predictor is not None else z for view, z in projections.items()}
        # 2. The key branch: the target network without gradient, or the online projections themselves.
        keys = self._keys(views, projections)
        if design.normalize:
            queries = {view: F.normalize(q.float(), dim=1) for view, q in queries.items()}
            keys = {view: F.normalize(k.float(), dim=1) for view, k in keys.items()}
        # 3. Look-up and loss.
        if design.joint:
            query = torch.cat([queries[view] for view in sorted(queries)])
            all_keys = torch.cat([keys[view] for view in sorted(keys)])
            loss = self._loss(query, self._read(all_keys, batch.index, labels, joint=True))
        else:
            terms = [self._loss(queries[q], self._read(keys[k], batch.index, labels)) for q, k in design.pairs]
            loss = torch.stack(terms).sum() if design.reduction == "sum" else torch.stack(terms).mean()
        # 4. Writes for after the optimizer step (the engine applies them): enqueue, memory-bank update. One write
        # per key view, so a replicated store that gathers each write from every rank holds the global batch view
        # by view, as one process with the global batch would (one write of this rank's views would interleave ranks).
        writes = [(keys[view], batch.index, labels) for view in design.key_views]
        output = MethodOutput(loss, writes=[KeyWrite(s, k, i, y) for s in self.stores for k, i, y in writes])
        for follower in self.followers():
            momentum = getattr(follower.updater, "momentum", None)
            if callable(momentum):
                output.logs["momentum"] = momentum(step.step)
        return output

    # -- the pieces of the step ----------------------------------------------------------------------------------------
    def _views(self, batch: Batch) -> list[torch.Tensor]:
        wanted = self.design.num_views
        if len(batch.views) != wanted:
            raise SslcoreError(
                f"{self.name} trains on {wanted} view{'s' if wanted > 1 else ''} per image, the batch has "
                f"{len(batch.views)}",
                hint=f"use a view transform with num_views = {wanted}",
            )
        if self.design.one_pass and len({tuple(view.shape) for view in batch.views}) > 1:
            raise SslcoreError(
                f"{self.name} passes all views through the network as one batch, so they need one shape, got "
                f"{[tuple(view.shape) for view in batch.views]}",
                hint="give every view the same size",
            )
        return batch.views

    def _labels(self, batch: Batch) -> torch.Tensor | None:
        if not self.design.labels:
            return None
        if batch.label is None:
            raise SslcoreError(
                f"{self.name} is supervised: it needs class labels and this dataset has none",
                hint="train on a labelled dataset (e.g. labels = true in [data], with a label column)",
            )
        return batch.label

    def _online(self, views: list[torch.Tensor]) -> dict[int, torch.Tensor]:
        design = self.design
        wanted = {query for query, _ in design.pairs}
        if design.keys_from == "online":
            wanted |= set(design.key_views)
        if design.one_pass:
            chunks = self.encoder(torch.cat([views[view] for view in sorted(wanted)])).chunk(len(wanted))
            return dict(zip(sorted(wanted), chunks))
        return {view: grouped_forward(self.encoder, views[view], design.bn_group_size) for view in sorted(wanted)}

    def _keys(self, views: list[torch.Tensor], projections: dict[int, torch.Tensor]) -> dict[int, torch.Tensor]:
        design = self.design
        if design.keys_from == "online":
            return {view: projections[view] for view in design.key_views}
        if isinstance(self.target, StopGradient) and all(view in projections for view in design.key_views):
            return {view: projections[view].detach() for view in design.key_views}  # SimSiam's z.detach()
        if design.shuffle_bn:
            # Each shuffled forward draws a permutation: draw them in the order the pairs name their key views, as
            # the official code encodes them (symmetric demo: loss_12's k2, then loss_21's k1).
            order = list(dict.fromkeys(key for _, key in design.pairs))
            with torch.no_grad():
                keys = {view: shuffled_forward(self.target, views[view], design.bn_group_size) for view in order}
            return {view: keys[view] for view in design.key_views}
        with torch.no_grad():
            return {view: grouped_forward(self.target, views[view], design.bn_group_size) for view in design.key_views}

    def _read(self, keys: torch.Tensor, index: torch.Tensor, labels: torch.Tensor | None, *, joint: bool = False) -> Keys:
        if not self.stores:
            return Keys(positive=keys)
        positive_rows = exclude_rows = None
        if joint:
            views, batch = len(self.design.key_views), index.shape[0]
            rows = torch.arange(batch, device=keys.device)
            partner, order = dict(self.design.pairs), self.design.key_views
            positive_rows = torch.cat([order.index(partner[view]) * batch + rows for view in order])
            exclude_rows = torch.arange(views * batch, device=keys.device)
            index, labels = index.repeat(views), _repeat(labels, views)
        found = None
        try:
            for store in self.stores:
                read = store.read(keys, index=index, labels=labels, positive_rows=positive_rows, exclude_rows=exclude_rows)
                found = read if found is None else found.cat(read)
        except KeysMismatch as error:
            raise SslcoreError(f"{self.combination} do not fit: {error.what}", where=self.source, hint=_FIT_HINT) from None
        assert found is not None
        return found

    def _loss(self, query: torch.Tensor, keys: Keys) -> torch.Tensor:
        try:
            return self.loss(query, keys)
        except KeysMismatch as error:
            raise SslcoreError(f"{self.combination} do not fit: {error.what}", where=self.source, hint=_FIT_HINT) from None

    def head_network(self) -> nn.Module:
        """The online encoder: backbone and projection head (the query before any predictor)."""
        return self.encoder

    def evaluation_network(self) -> nn.Module:
        """The backbone, followed by the first ``eval_from_projector_layer`` projection-head blocks (SimCLR v2)."""
        layers = self.design.eval_from_projector_layer
        if layers == 0:
            return self.backbone
        return nn.Sequential(self.backbone, *self.encoder[1].layers[:layers])


_FIT_HINT = "pick a loss and key store whose mathematics fit (docs/components.md lists what each gives and needs)"


def _repeat(labels: torch.Tensor | None, times: int) -> torch.Tensor | None:
    return None if labels is None else labels.repeat(times)


def build_lookup(name: str, design: LookupDesign, parts: MethodParts) -> LookupMethod:
    """Build ``name``'s look-up method from the recipe's tables: ``[backbone]``, ``[heads.<head>]``, optionally
    ``[heads.predictor]``, ``[target_updater]`` (keys from a target), ``[key_store]`` and ``[loss]``."""
    backbone = parts.backbone()
    head = parts.head(design.head, in_dim=backbone.num_features)
    predictor = parts.head("predictor", in_dim=head.out_dim) if design.predictor else None
    if predictor is not None and predictor.out_dim != head.out_dim:
        raise SslcoreError(
            f"{name}'s predictor gives {predictor.out_dim} dimensions but the {design.head} {head.out_dim}: "
            "it predicts the key branch's projection",
            where=parts.recipe.source,
            hint=f"set [heads.predictor] out_dim to [heads.{design.head}] out_dim",
        )
    _check_eval_layers(name, design, head, parts)
    encoder = nn.Sequential(OrderedDict(backbone=backbone, **{design.head: head}))
    updater = parts.target_updater() if design.keys_from == "target" else None
    stores = [parts.key_store(head.out_dim)] if design.use_key_store else []
    loss = parts.loss()
    kinds = [f"[loss] '{parts.recipe.components['loss'].kind}'"]
    if design.use_key_store:
        kinds.append(f"[key_store] '{parts.recipe.components['key_store'].kind}'")
    return LookupMethod(
        name, design, encoder=encoder, predictor=predictor, updater=updater, stores=stores, loss=loss,
        combination=" and ".join(kinds), source=parts.recipe.source,
    )


def _check_eval_layers(name: str, design: LookupDesign, head: nn.Module, parts: MethodParts) -> None:
    wanted = design.eval_from_projector_layer
    layers = len(getattr(head, "layers", ()))
    if wanted > 0 and wanted >= layers:
        raise SslcoreError(
            f"eval_from_projector_layer = {wanted} needs an `mlp` projection head with more layers, got "
            f"{type(head).__name__} with {layers}",
            where=parts.recipe.source,
            hint="SimCLR v2 uses 1 with a 3-layer head (heads.projector.num_layers = 3)",
        )
