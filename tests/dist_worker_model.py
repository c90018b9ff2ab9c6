"The tiny network of tests/dist_worker.py."
import torch
from torch import nn


class NoNormNet(nn.Module):
    "No BatchNorm, no dropout: a DDP step on a split batch must equal one step on the whole batch."
    def __init__(self, n_classes=4):
        super().__init__()
        torch.manual_seed(0)
        self.backbone = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 8, 3, padding=1), nn.ReLU())
        self.head = nn.Linear(8, n_classes)
    def features(self, x, which=None): return self.backbone(x).mean((2, 3))
    def forward(self, x): return self.head(self.features(x))


def fresh_weights()->dict:
    "The untrained weights every run starts from."
    return NoNormNet().state_dict()
