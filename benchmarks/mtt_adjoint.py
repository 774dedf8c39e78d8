"""Time one MTT student step's meta-gradient two ways: autograd's double backward (what the distiller does) and a
compiled torch.func Hessian-vector product (a candidate that is not used yet), and print how far they differ.

One step of the unrolled student needs, for the parameters θ, the images x and the adjoint v (the gradient of the
matching loss with respect to the step's output), the first-order gradient g = ∂CE/∂θ and the two products
∂(g·v)/∂θ and ∂(g·v)/∂x. `TrajectoryMatching.student_steps` gets them from `torch.autograd.grad(create_graph=True)`
and a backward through the kept graph, which cannot be compiled. Written as a pure function of tensors with
`torch.func.grad` (the gradient of g·v), the same products can be handed to `torch.compile`, which fuses the
instance norm's and ReLU's elementwise double-backward work. A distiller built on it would walk the steps
forward without a graph (keeping θ_k and the DSA draws of each step) and then backward, one compiled call per step.

    PYTHONPATH=. python benchmarks/mtt_adjoint.py --images 100 --repeats 3 --threads 1
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch.func import functional_call, grad

from networks import get_network
from utils.compiled import _configure


def main() -> None:
    """Build the CIFAR-10 ConvNet, compile the torch.func product, compare it with autograd, time both."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100, help="synthetic images per student step")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    _configure()
    torch.manual_seed(0)
    net = get_network("ConvNet", 3, 10, (32, 32))
    shapes = [(name, p.shape) for name, p in net.named_parameters()]

    def unflatten(flat: torch.Tensor) -> dict[str, torch.Tensor]:
        params, offset = {}, 0
        for name, shape in shapes:
            params[name] = flat[offset:offset + shape.numel()].view(shape)
            offset += shape.numel()
        return params

    def cross_entropy(flat: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(functional_call(net, unflatten(flat), (x,)), y)

    first_order = grad(cross_entropy)

    def products(flat, x, y, v):
        def g_dot_v(p, images):
            g = first_order(p, images, y)
            return (g * v).sum(), g
        (d_params, d_images), g = grad(g_dot_v, argnums=(0, 1), has_aux=True)(flat, x)
        return g, d_params, d_images

    def autograd_products(flat, x, y, v):
        p, images = flat.clone().requires_grad_(True), x.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(cross_entropy(p, images, y), p, create_graph=True)
        d_params, d_images = torch.autograd.grad((g * v).sum(), (p, images))
        return g.detach(), d_params, d_images

    flat = torch.cat([p.detach().flatten() for p in net.parameters()])
    x, y = torch.randn(args.images, 3, 32, 32), torch.arange(args.images) % 10
    v = torch.randn_like(flat)
    compiled = torch.compile(products, dynamic=False)
    start = time.perf_counter()
    ours = compiled(flat, x, y, v)
    print(f"compilation: {time.perf_counter() - start:.1f} s")
    reference = autograd_products(flat, x, y, v)
    for name, a, b in zip(("g", "d(g.v)/dθ", "d(g.v)/dx"), ours, reference):
        print(f"{name}: max |compiled − autograd| / max |autograd| = {((a - b).abs().max() / b.abs().max()):.2e}")
    for r in range(args.repeats):
        for name, fn in (("autograd double backward", autograd_products), ("compiled torch.func", compiled)):
            start = time.perf_counter()
            fn(flat, x, y, v)
            print(f"round {r}: {name}: {time.perf_counter() - start:.3f} s")


if __name__ == "__main__":
    main()
