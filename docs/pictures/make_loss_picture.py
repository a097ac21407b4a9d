"""Draw docs/pictures/loss.png: the README's training loop, a cloud moved onto another by
gradient descent on ``otcli.SinkhornLoss``, at steps 0, 4 and 39 (needs otcli[plot]).

    python docs/pictures/make_loss_picture.py [OUT.png]
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

import otcli  # noqa: E402

SNAPSHOTS = (0, 4, 39)


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_name("loss.png")
    torch.manual_seed(0)
    x = torch.randn(300, 2, requires_grad=True)
    y = torch.randn(200, 2) * 0.3 + torch.tensor([4.0, 1.0])
    loss_fn = otcli.SinkhornLoss(eps=0.01)
    opt = torch.optim.SGD([x], lr=0.2)
    shots, losses = {}, []
    for step in range(40):
        if step in SNAPSHOTS:
            shots[step] = x.detach().clone()
        opt.zero_grad()
        loss = loss_fn(x, y)
        loss.backward()
        x.grad *= len(x) / 2
        opt.step()
        losses.append(loss.item())
    fig, axes = plt.subplots(1, 4, figsize=(13, 3.4), layout="constrained")
    for ax, step in zip(axes[:3], SNAPSHOTS, strict=True):
        ax.scatter(y[:, 0], y[:, 1], s=14, c="tab:orange", label="target y")
        ax.scatter(shots[step][:, 0], shots[step][:, 1], s=5, c="tab:blue", alpha=0.7, label="x")
        ax.set_title(f"step {step}: S_ε = {losses[step]:.3g}")
        ax.set_aspect("equal")
        ax.set_xlim(-3.5, 5.5)
        ax.set_ylim(-3.5, 3.5)
    axes[0].legend(loc="lower right", fontsize=8)
    axes[3].semilogy(losses, marker=".")
    axes[3].set_xlabel("step")
    axes[3].set_title("Sinkhorn divergence (ε = 0.01)")
    fig.savefig(out, dpi=100)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
