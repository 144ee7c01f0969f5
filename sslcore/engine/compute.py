"""How the step computes: ``[run] channels_last`` (memory format) and ``[run] compile`` (torch.compile).

``channels_last`` stores the method's 4-D weights and every image batch as NHWC, which cuDNN's and oneDNN's
convolution kernels prefer (tensor cores under bf16/fp16); the values are unchanged, so checkpoints load either way.

``compile`` compiles the networks that hold the step's FLOPs: the backbones the method exports and the online and
target networks it follows (:meth:`sslcore.method.Method.follow`; of nested ones the inner), each as one whole graph
(``fullgraph=True``), through the slot :meth:`torch.nn.Module.compile` fills. The method's own forward (key-store
reads and writes, gathers across processes, per-step Python decisions) stays eager: Dynamo cannot trace all of it
(it fails on the generic look-up method), and it would recompile for every new step number it branches on. A network
that cannot be compiled (a graph break, a backend without its compiler) runs uncompiled from then on, after one
console line saying why (process 0's; every process compiles the same graphs): a whole-graph failure happens before
anything of the call ran, so nothing is done twice. Parameter names do not change, so a checkpoint saved with
``compile = true`` resumes with ``compile = false`` and back.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from sslcore.console import launched_rank, out
from sslcore.method import Method


def channels_last(views: list[torch.Tensor]) -> list[torch.Tensor]:
    """``views`` with each image batch (4-D) in ``torch.channels_last`` memory format."""
    return [view.contiguous(memory_format=torch.channels_last) if view.ndim == 4 else view for view in views]


def compiled_networks(method: Method) -> dict[str, nn.Module]:
    """The networks ``[run] compile`` compiles, by name in ``method``: its exported backbones and the online and
    target networks of its followers; of two nested ones only the inner one (the method may call it directly), and
    none without parameters of its own (SimSiam's stop-gradient target calls the online network)."""
    wanted = list(method.exported_networks().values())
    for follower in method.followers():
        wanted += [follower.online, follower.target]
    names = {id(module): name or "method" for name, module in method.named_modules()}
    unique = {id(m): m for m in wanted if id(m) in names and next(m.parameters(), None) is not None}
    outer = {key for key, module in unique.items() if any(id(sub) in unique for sub in list(module.modules())[1:])}
    return {names[key]: module for key, module in unique.items() if key not in outer}


class _CompiledCall:
    """A network's compiled call that turns itself off, with one console line, when compilation fails."""

    def __init__(self, module: nn.Module, name: str) -> None:
        self.module, self.name = module, name
        self.compiled = torch.compile(module._call_impl, fullgraph=True)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return self.compiled(*args, **kwargs)
        except torch._dynamo.exc.TorchDynamoException as error:
            self.module._compiled_call_impl = None
            reason = " ".join(str(error).split())[:200]
            if launched_rank() == 0:
                out.print(
                    f"run.compile: {self.name} ({type(self.module).__name__}) runs uncompiled, torch.compile "
                    f"failed: {type(error).__name__}: {reason}",
                    markup=False,
                )
            return self.module._call_impl(*args, **kwargs)


def compile_networks(method: Method) -> list[str]:
    """Compile :func:`compiled_networks` of ``method`` in place (the state dict keeps its names); returns their
    names. Compilation happens at each network's first call."""
    networks = compiled_networks(method)
    for name, module in networks.items():
        module._compiled_call_impl = _CompiledCall(module, name)  # the slot nn.Module.compile fills
    return list(networks)


@contextmanager
def eager(method: nn.Module) -> Iterator[None]:
    """Run ``method``'s compiled networks uncompiled in the block (evaluation: other shapes, eval mode, no grad
    would each compile a graph used a few times)."""
    saved = {module: module._compiled_call_impl for module in method.modules() if module._compiled_call_impl}
    for module in saved:
        module._compiled_call_impl = None
    try:
        yield
    finally:
        for module, call in saved.items():
            module._compiled_call_impl = call
